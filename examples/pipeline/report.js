// The daily report: the day's hourly CPU by data centre as a CSV file, a PNG chart and an HTML
// page that shows both, kept with the run (`tsq runs show RUN`, GET /v1/runs/RUN/artifacts).
const DAY_MS = 86400000;

export default async function (event) {
  const dayEnd = Math.floor(event.window.endMs / DAY_MS) * DAY_MS;   // midnight before the run
  const day = new Date(dayEnd - DAY_MS).toISOString().slice(0, 10);
  // cpu_1h's buckets are labelled by their start (docs/time.md): the day's 24 hours are the
  // points in [dayStart, dayEnd), stamped 00:00 … 23:00.
  const hourly = await db.select("cpu_1h", {start: dayEnd - DAY_MS, end: dayEnd});
  if (hourly.length === 0) return {day, series: 0, note: "no hourly rollups for this day"};

  const summary = hourly.map(s => {
    let sum = 0, max = -Infinity;
    for (const v of s.values) { sum += v; if (v > max) max = v; }
    return {dc: s.labels.dc, hours: s.values.length, mean: +(sum / s.values.length).toFixed(2),
            max: +max.toFixed(2)};
  });
  await artifacts.csv("cpu-hourly.csv", hourly);
  await artifacts.chart("cpu-hourly.png", hourly,
                        {title: `CPU by data centre, ${day} (hourly means)`, ylabel: "cpu %"});
  const rows = summary.map(s => `<tr><td>${s.dc}</td><td>${s.hours}</td><td>${s.mean}</td>` +
                                `<td>${s.max}</td></tr>`).join("");
  await artifacts.html("report.html", `<!doctype html><meta charset="utf-8">
<title>CPU report ${day}</title>
<h1>CPU report for ${day}</h1>
<table border="1" cellpadding="4"><tr><th>dc</th><th>hours</th><th>mean</th><th>max</th></tr>${rows}</table>
<p><img src="cpu-hourly.png" alt="hourly CPU by data centre"></p>
<p><a href="cpu-hourly.csv">cpu-hourly.csv</a></p>`);
  return {day, summary};
}
