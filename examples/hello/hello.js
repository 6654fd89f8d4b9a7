// Resolving is success (HTTP 200); throwing or rejecting is failure (HTTP 500).
export default async function (event, ctx) {
  const cell = event.params.cell ?? "everywhere";
  console.log(`${env.GREETING} from ${cell}, run ${ctx.runId} of ${event.loop}`);
  return { greeting: `${env.GREETING}, ${cell}!`, scheduled: event.scheduled };
}
