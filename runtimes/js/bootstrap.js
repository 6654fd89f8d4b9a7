// Evaluated once in every fresh V8 instance before it is handed to a run.
//
// It removes what handlers must not have, provides `console` (lines kept in memory for the host
// to collect), and defines `__tsq`, the only entry points the host calls. Everything the host
// relies on (JSON, Promise.prototype.then, Reflect.apply, …) is captured here, before user code
// runs, because user code may replace the globals. No function of the host is reachable from
// JavaScript: the host polls `__tsq.poll()`, which returns a string built here.
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
  const SharedBuffer = g.SharedArrayBuffer;
  const Int32 = Int32Array;
  const waitAsync = Atomics.waitAsync;

  // mini-racer's own __timer_manager cannot be deleted; without these globals it is inert.
  for (const name of ["SharedArrayBuffer", "Atomics", "WebAssembly"]) delete g[name];

  const logs = [];
  let logBytes = 0;
  let dropped = 0;
  let outcome = null;

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

  // Timers on Atomics.waitAsync (what mini-racer's own setTimeout uses), rebuilt here so the
  // globals it needs (SharedArrayBuffer, Atomics) can be taken away from handlers. V8's bundled
  // version also rejects a 0 ms delay; this one clamps to 1 ms.
  const pendingTimers = new Set();
  let nextTimer = 1;
  function setTimeout(callback, delay) {
    if (typeof callback !== "function") throw new TypeError("setTimeout needs a function");
    if (pendingTimers.size >= limits.maxTimers) throw new RangeError("too many pending timers");
    const id = nextTimer++;
    const args = Array.prototype.slice.call(arguments, 2);
    const view = new Int32(new SharedBuffer(4));
    pendingTimers.add(id);
    apply(then, apply(waitAsync, undefined, [view, 0, 0, Math.max(1, Number(delay) || 0)]).value, [function () {
      if (pendingTimers.delete(id)) apply(callback, undefined, args);
    }]);
    return id;
  }
  function clearTimeout(id) { pendingTimers.delete(id); }
  defineProperty(g, "setTimeout", { value: setTimeout, writable: false, configurable: false });
  defineProperty(g, "clearTimeout", { value: clearTimeout, writable: false, configurable: false });

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

  const host = freeze({
    start(moduleFunction, eventJson, contextJson, envJson) {
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
    poll() {
      const lines = apply(splice, logs, [0, logs.length]);
      const report = { logs: lines, dropped: dropped, outcome: outcome };
      return stringify(report);
    },
  });
  defineProperty(g, "__tsq", { value: host, writable: false, configurable: false, enumerable: false });
})
