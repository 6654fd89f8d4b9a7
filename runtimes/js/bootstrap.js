// Evaluated first in every fresh V8 context, before the handler's code.
//
// It removes what handlers must not have, provides `console` (lines kept in memory for the host
// to collect) and timers, and defines `__tsq`, the only entry points the host calls. Everything
// the host relies on (JSON, Promise.prototype.then, Reflect.apply, …) is captured here, before
// user code runs, because user code may replace the globals. No function of the host is
// reachable from JavaScript: the host evaluates `__tsq.report()`, a string built here.
(function (limits) {
  "use strict";
  const g = globalThis;
  const stringify = JSON.stringify;
  const parse = JSON.parse;
  const apply = Reflect.apply;
  const defineProperty = Object.defineProperty;
  const freeze = Object.freeze;
  const then = Promise.prototype.then;
  const resolve = Promise.resolve.bind(Promise);
  const ErrorType = Error;
  const now = Date.now;
  const toStr = String;
  const push = Array.prototype.push;
  const splice = Array.prototype.splice;

  for (const name of ["SharedArrayBuffer", "Atomics", "WebAssembly"]) delete g[name];

  const Float64 = Float64Array;
  const Int32 = Int32Array;
  const joinTyped = Object.getPrototypeOf(Int32Array.prototype).join;
  const isView = ArrayBuffer.isView;
  const dateParse = Date.parse;
  const PromiseType = Promise;
  const logs = [];
  let logBytes = 0;
  let dropped = 0;
  let outcome = null;
  let loadedModule = null;

  function show(value) {
    if (typeof value === "string") return value;
    if (value instanceof ErrorType) return toStr(value.stack || value);
    try {
      const text = stringify(value);
      return text === undefined ? toStr(value) : text;
    } catch (error) {
      return toStr(value);
    }
  }

  function logger(level) {
    return function () {
      let line;
      try {
        const parts = [];
        for (let i = 0; i < arguments.length; i++) apply(push, parts, [show(arguments[i])]);
        line = parts.join(" ");
      } catch (error) {
        line = "[a value that cannot be shown]";
      }
      if (line.length > limits.maxLineChars) line = line.slice(0, limits.maxLineChars) + "… [cut]";
      if (logs.length >= limits.maxLines || logBytes + line.length > limits.maxLogChars) {
        dropped++;
        return;
      }
      logBytes += line.length;
      apply(push, logs, [[now(), level, line]]);
    };
  }

  const console = freeze({
    log: logger("info"), info: logger("info"), debug: logger("debug"),
    warn: logger("warning"), error: logger("error"),
  });
  defineProperty(g, "console", { value: console, writable: false, configurable: false });

  // Timers run by the host: V8 alone has no event loop, so each poll() fires the timers that are
  // due, in the order of their times, and report() tells the host when the next one is.
  const timers = new Map();
  let nextTimer = 1;
  const slice = Array.prototype.slice;
  const max = Math.max;
  function setTimeout(callback, delay) {
    if (typeof callback !== "function") throw new TypeError("setTimeout needs a function");
    if (timers.size >= limits.maxTimers) throw new RangeError("too many pending timers");
    const id = nextTimer++;
    timers.set(id, { due: now() + max(1, Number(delay) || 0), callback: callback, args: apply(slice, arguments, [2]) });
    return id;
  }
  function clearTimeout(id) { timers.delete(id); }
  defineProperty(g, "setTimeout", { value: setTimeout, writable: false, configurable: false });
  defineProperty(g, "clearTimeout", { value: clearTimeout, writable: false, configurable: false });

  function nextDue() {
    let first = null;
    for (const timer of timers.values()) if (first === null || timer.due < first) first = timer.due;
    return first;
  }

  function fireTimers() {
    const time = now();
    const due = [];
    for (const [id, timer] of timers) if (timer.due <= time) apply(push, due, [[id, timer]]);
    due.sort(function (a, b) { return a[1].due - b[1].due || a[0] - b[0]; });
    for (const [id, timer] of due) {
      if (!timers.delete(id)) continue;  // cleared by an earlier callback
      try { apply(timer.callback, undefined, timer.args); } catch (error) { fail(error); }
    }
  }

  function describe(error) {
    try {
      if (error instanceof ErrorType) {
        return { type: toStr(error.name), message: toStr(error.message), stack: toStr(error.stack || "") };
      }
      const shown = typeof error === "string" ? error : show(error);
      return { type: "Error", message: shown, stack: "" };
    } catch (problem) {
      return { type: "Error", message: "the handler failed with a value that cannot be shown", stack: "" };
    }
  }

  function fail(error) {
    if (outcome === null) outcome = { ok: false, error: describe(error) };
  }

  function succeed(value) {
    if (outcome !== null) return;
    let text;
    try {
      text = value === undefined ? "null" : stringify(value);
    } catch (error) {
      outcome = { ok: false, error: { type: "ResultError", message: "the result is not JSON-serialisable: " + toStr(error.message), stack: "" } };
      return;
    }
    if (text === undefined) {
      outcome = { ok: false, error: { type: "ResultError", message: "the result is not JSON-serialisable: a " + typeof value + " has no JSON form", stack: "" } };
    } else if (text.length > limits.maxResultChars) {
      outcome = { ok: false, error: { type: "ResultError", message: "the result is " + text.length + " characters of JSON, over the limit of " + limits.maxResultChars + "; write large data to the store and return a summary", stack: "" } };
    } else {
      outcome = { ok: true, value: text };
    }
  }

  function pickHandler(module) {
    const exported = module.exports;
    if (typeof exported === "function") return exported;
    if (exported && typeof exported.default === "function") return exported.default;
    if (exported && typeof exported.handler === "function") return exported.handler;
    return null;
  }

  function invoke(handler, event, context) {
    let returned;
    try {
      returned = handler(event, context);
    } catch (error) {
      fail(error);
      return;
    }
    apply(then, resolve(returned), [succeed, fail]);
  }

  // -- the store: db.select / db.write / db.delete ----------------------------------------
  // A call queues a request that the host collects with poll(); the host answers through
  // fill()/deliver()/reject(). Bulk numbers travel as Float64Array buffers the host reads or
  // writes in place, never as JSON.
  const requests = [];
  const pending = new Map();
  let nextRequest = 1;

  function call(op, args, arrays) {
    const id = nextRequest++;
    return new PromiseType(function (resolveCall, rejectCall) {
      pending.set(id, { resolve: resolveCall, reject: rejectCall, arrays: arrays || [], op: op });
      apply(push, requests, [{ id: id, op: op, args: args }]);
    });
  }

  function instant(value, what) {
    if (value === undefined || value === null) return null;
    if (typeof value === "number" && value === value) return value;
    if (value instanceof Date) return value.getTime();
    if (typeof value === "string") {
      const parsed = dateParse(value);
      if (parsed === parsed) return parsed;
    }
    throw new TypeError(what + " must be epoch milliseconds, a Date or an ISO-8601 string, got " + show(value));
  }

  function range(options) {
    const given = options || {};
    return { start: instant(given.start, "start"), end: instant(given.end, "end") };
  }

  // `{connector: "name"}`: a call reaches that connector of the loop file, not the loop's own.
  function routed(args, options) {
    const name = options && options.connector;
    if (name === undefined || name === null) return args;
    if (typeof name !== "string") throw new TypeError("connector must be the name of a connector of the loop file, got " + show(name));
    args.connector = name;
    return args;
  }

  function withRename(series) {
    defineProperty(series, "rename", {
      value: function (name) {
        return withRename(series.map(function (s) { return { name: name, labels: s.labels, timestamps: s.timestamps, values: s.values }; }));
      },
      enumerable: false,
    });
    return series;
  }

  function packSeries(list) {
    if (!Array.isArray(list)) list = [list];
    let total = 0;
    const meta = [];
    for (const s of list) {
      if (!s || typeof s.name !== "string" || s.name === "") throw new TypeError("db.write needs series as {name, labels, timestamps, values}");
      const n = s.timestamps.length;
      if (s.values.length !== n) throw new RangeError("series " + s.name + ": " + n + " timestamps but " + s.values.length + " values");
      apply(push, meta, [{ name: s.name, labels: s.labels || {}, count: n }]);
      total += n;
    }
    const packed = new Float64(2 * total);  // times then values: one buffer for the host
    const times = packed.subarray(0, total);
    const values = packed.subarray(total);
    let at = 0;
    for (const s of list) {
      const n = s.timestamps.length;
      if (isView(s.timestamps) && isView(s.values)) {
        times.set(s.timestamps, at);
        values.set(s.values, at);
      } else {
        for (let i = 0; i < n; i++) { times[at + i] = instant(s.timestamps[i], "a timestamp"); values[at + i] = +s.values[i]; }
      }
      at += n;
    }
    return { meta: meta, arrays: [packed] };
  }

  const db = freeze({
    select(selector, options) {
      if (typeof selector !== "string") return PromiseType.reject(new TypeError("db.select needs a selector string like 'cpu{dc=\"gra\"}'"));
      try { return call("db.select", routed({ selector: selector, range: range(options) }, options)); }
      catch (error) { return PromiseType.reject(error); }
    },
    write(data, options) {
      try {
        if (typeof data === "string") return call("db.write", routed({ lines: data }, options));
        const packed = packSeries(data);
        return call("db.write", routed({ series: packed.meta }, options), packed.arrays);
      } catch (error) { return PromiseType.reject(error); }
    },
    delete(selector, options) {
      if (typeof selector !== "string") return PromiseType.reject(new TypeError("db.delete needs a selector string"));
      try { return call("db.delete", routed({ selector: selector, range: range(options) }, options)); }
      catch (error) { return PromiseType.reject(error); }
    },
  });
  defineProperty(g, "db", { value: db, writable: false, configurable: false });

  // tsl(query[, variables]): a TSL query on the loop's store, evaluated by the worker; resolves
  // to the same series set as db.select. The run's start, end, scheduled and params are defined.
  function tsl(query, variables) {
    if (typeof query !== "string") return PromiseType.reject(new TypeError("tsl needs the query as a string"));
    if (variables !== undefined && (variables === null || typeof variables !== "object")) return PromiseType.reject(new TypeError("tsl's variables must be an object like {dc: \"gra\"}"));
    return call("tsl", { query: query, variables: variables || {} });
  }
  defineProperty(g, "tsl", { value: freeze(tsl), writable: false, configurable: false });

  // ws(script[, variables]): a WarpScript script on the loop's store, run by the worker; resolves
  // to its stack, top first, each GTS as {name, labels, timestamps, values}. A failing script
  // rejects with a WarpScriptError whose message ends with the line and column.
  function ws(script, variables) {
    if (typeof script !== "string") return PromiseType.reject(new TypeError("ws needs the script as a string"));
    if (variables !== undefined && (variables === null || typeof variables !== "object")) return PromiseType.reject(new TypeError("ws's variables must be an object like {dc: \"gra\"}"));
    return call("ws", { script: script, variables: variables || {} });
  }
  defineProperty(g, "ws", { value: freeze(ws), writable: false, configurable: false });

  // Loop.run(name, params): run another loop as a step of this run's pipeline and resolve to
  // its result (reject with its error). A step that succeeded before in this pipeline (a resume,
  // a restart) answers with its recorded result instead of running again.
  const Loop = freeze({
    run(name, params) {
      if (typeof name !== "string" || name === "") return PromiseType.reject(new TypeError("Loop.run needs a loop name, like Loop.run(\"cpu-rollup\", {dc: \"gra\"})"));
      if (params !== undefined && (params === null || typeof params !== "object" || Array.isArray(params))) return PromiseType.reject(new TypeError("Loop.run's params must be an object like {dc: \"gra\"}"));
      return apply(then, call("loop.run", { loop: name, params: params || {} }), [function (answer) { return answer.result; }]);
    },
  });
  defineProperty(g, "Loop", { value: Loop, writable: false, configurable: false });

  // -- artifacts: files kept with the run (a report's CSV, JSON, chart, HTML page) ------------
  // Each method resolves to the artifact as the API lists it: {name, contentType, size,
  // created, url}. Text crosses as JSON, bytes as one buffer the worker reads in place, series
  // packed as db.write packs them; the worker renders csv and chart (numpy, matplotlib) and
  // checks names and options (tsq/reports.py), so those rules live in one place.
  const Bytes = Uint8Array;
  const ArrayBufferType = ArrayBuffer;
  const sliceBytes = Uint8Array.prototype.slice;
  const isArray = Array.isArray;

  function attempt(work) {
    try { return work(); } catch (error) { return PromiseType.reject(error); }
  }

  function bytesOf(content) {
    // A copy with a buffer of its own: a view's buffer may hold more than the view shows.
    if (content instanceof ArrayBufferType) return apply(sliceBytes, new Bytes(content), []);
    if (isView(content)) return apply(sliceBytes, new Bytes(content.buffer, content.byteOffset, content.byteLength), []);
    throw new TypeError("artifacts.save needs the content as a string, an ArrayBuffer or a typed array (bytes), got " + (content === null ? "null" : typeof content));
  }

  function packedSeries(method, series) {
    const list = isArray(series) ? series : [series];
    for (let i = 0; i < list.length; i++) {
      const s = list[i];
      if (!s || typeof s !== "object" || typeof s.name !== "string" || s.name === "" || !s.timestamps || !s.values || typeof s.timestamps.length !== "number" || typeof s.values.length !== "number") {
        throw new TypeError("artifacts." + method + " needs series as db.select and tsl() return them, [{name, labels, timestamps, values}]; item " + i + " is " + show(s).slice(0, 60));
      }
    }
    try { return packSeries(list); }
    catch (error) { throw new TypeError("artifacts." + method + ": " + error.message); }
  }

  function rendered(method, name, series, options) {
    const packed = packedSeries(method, series);
    return call("artifacts." + method, { method: method, name: name, series: packed.meta, options: options }, packed.arrays);
  }

  const artifacts = freeze({
    save(name, content, contentType) {
      return attempt(function () {
        const args = { method: "save", name: name, contentType: contentType === undefined ? null : contentType };
        if (typeof content !== "string") return call("artifacts.put", args, [bytesOf(content)]);
        args.text = content;
        return call("artifacts.put", args);
      });
    },
    json(name, value) {
      return attempt(function () {
        let text;
        try { text = stringify(value, null, 2); }
        catch (error) { throw new TypeError("artifacts.json: the value has no JSON form: " + error.message); }
        if (text === undefined) throw new TypeError("artifacts.json: the value has no JSON form (a " + typeof value + ")");
        return call("artifacts.put", { method: "json", name: name, contentType: null, text: text });
      });
    },
    html(name, html) {
      return attempt(function () {
        if (typeof html !== "string") throw new TypeError("artifacts.html needs the page as a string, like artifacts.html(\"report.html\", \"<h1>CPU</h1>\"), got " + typeof html);
        return call("artifacts.put", { method: "html", name: name, contentType: null, text: html });
      });
    },
    csv(name, series) {
      return attempt(function () { return rendered("csv", name, series, null); });
    },
    chart(name, series, options) {
      return attempt(function () { return rendered("chart", name, series, options === undefined ? null : options); });
    },
  });
  defineProperty(g, "artifacts", { value: artifacts, writable: false, configurable: false });

  function deliver(id, answer) {
      const slot = pending.get(id);
      pending.delete(id);
      if (slot.op === "ws") { slot.resolve(answer.stack); return; }
      if (slot.op !== "db.select" && slot.op !== "tsl") { slot.resolve(answer); return; }
      const points = slot.arrays.length ? slot.arrays[0].length / 2 : 0;
      const times = points ? slot.arrays[0].subarray(0, points) : new Float64(0);
      const values = points ? slot.arrays[0].subarray(points) : new Float64(0);
      const series = [];
      let at = 0;
      for (const s of answer.series) {
        apply(push, series, [{ name: s.name, labels: s.labels, timestamps: times.subarray(at, at + s.count), values: values.subarray(at, at + s.count) }]);
        at += s.count;
      }
      slot.resolve(withRename(series));
  }

  function reject(id, error) {
      const slot = pending.get(id);
      pending.delete(id);
      const failure = new ErrorType(error.message);
      failure.name = error.type;
      slot.reject(failure);
  }

  const host = freeze({
    // A request's numbers (times then values) cross as the integers of their bits, so every
    // double, NaN and infinities included, arrives exactly: the host reads them with
    // numbers(id) or bytes(id) and hands its own over with fill(id, [...]).
    numbers(id) {
      const packed = pending.get(id).arrays[0];
      return apply(joinTyped, new Int32(packed.buffer, packed.byteOffset, packed.length * 2), [","]);
    },
    bytes(id) {
      const bytes = pending.get(id).arrays[0];
      return apply(joinTyped, new Bytes(bytes.buffer, bytes.byteOffset, bytes.byteLength), [","]);
    },
    fill(id, words) {
      pending.get(id).arrays = [new Float64(new Int32(words).buffer)];
    },
    load(moduleFunction) { loadedModule = moduleFunction; },
    start(eventJson, contextJson, envJson) {
      const moduleFunction = loadedModule;
      const event = freeze(parse(eventJson));
      const env = freeze(parse(envJson));
      const context = parse(contextJson);
      context.env = env;
      context.remainingTimeMs = function () { return Math.max(0, context.deadlineMs - now()); };
      freeze(context);
      defineProperty(g, "event", { value: event, writable: false, configurable: false });
      defineProperty(g, "env", { value: env, writable: false, configurable: false });
      const module = { exports: {} };
      let loaded;
      try {
        loaded = moduleFunction(module, module.exports);
      } catch (error) {
        fail(error);
        return;
      }
      // Call the handler within this evaluation when the module defined it synchronously, so
      // its synchronous part runs under the evaluation's time and memory limits.
      const ready = pickHandler(module);
      if (ready !== null) {
        invoke(ready, event, context);
        return;
      }
      apply(then, resolve(loaded), [function () {
        const handler = pickHandler(module);
        if (handler === null) {
          fail(new TypeError("the handler file exports no function: write `export default async function (event, ctx) { … }` or `module.exports = async (event, ctx) => …`"));
          return;
        }
        invoke(handler, event, context);
      }, fail]);
    },
    // `answersJson`: the host's answers to earlier requests, [[id, ok, answer], …]; then the
    // timers that are due. Their promise reactions run when this evaluation ends, so the host
    // asks for report() in a second one.
    poll(answersJson) {
      if (answersJson) {
        for (const [id, ok, answer] of parse(answersJson)) (ok ? deliver : reject)(id, answer);
      }
      fireTimers();
    },
    report() {
      const lines = apply(splice, logs, [0, logs.length]);
      const asked = apply(splice, requests, [0, requests.length]);
      const next = nextDue();
      const report = { logs: lines, dropped: dropped, outcome: outcome, requests: asked,
                       nextTimerMs: next === null ? null : max(0, next - now()) };
      return stringify(report);
    },
  });
  defineProperty(g, "__tsq", { value: host, writable: false, configurable: false, enumerable: false });
})
