// Every scheduled run gets the window it is responsible for, however late it starts.
export default async function (event) {
  const lateMs = Date.now() - event.scheduledMs;
  console.log(`window ${event.window.start} .. ${event.window.end}, started ${lateMs} ms late`);
  return { window: [event.window.start, event.window.end], lateMs, attempt: event.attempt };
}
