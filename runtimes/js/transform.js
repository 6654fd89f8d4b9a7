// Turns a handler file into one function expression that V8 can evaluate as a script.
//
// mini-racer evaluates scripts only, so ES module syntax is rewritten with a real parser (acorn,
// loaded beside this file in a trusted instance): `export default X` becomes
// `exports.default = X`, named exports become assignments appended at the end, and the body is
// wrapped in `async function (module, exports) {…}` so top-level await works. The wrapper opens
// on line 1 so line numbers in stack traces match the user's file.
"use strict";

const HOST_API = "use what tsq provides instead: `db` (db.select, db.write, db.delete), `tsl()` (TSL queries), `Loop.run` (other loops), `artifacts` (files kept with the run), `env` (the loop's environment) and `console`";

function tsqTransform(source) {
  return JSON.stringify(withLineInfo(source, transform(source)));
}

function transform(source) {
  const options = { ecmaVersion: "latest", allowHashBang: true, allowAwaitOutsideFunction: true };
  let ast;
  let isModule = true;
  try {
    ast = acorn.parse(source, Object.assign({ sourceType: "module" }, options));
  } catch (moduleError) {
    try {
      ast = acorn.parse(source, Object.assign({ sourceType: "script", allowReturnOutsideFunction: true }, options));
      isModule = false;
    } catch (scriptError) {
      return syntaxError(moduleError);
    }
  }
  const edits = [];
  const tail = [];
  let exportsSomething = false;
  for (const node of ast.body) {
    const problem = rewriteTopLevel(node, edits, tail);
    if (problem) return problem;
    if (/^Export/.test(node.type)) exportsSomething = true;
  }
  const dynamic = findNode(ast, (n) => n.type === "ImportExpression" || n.type === "MetaProperty");
  if (dynamic) return located(dynamic, "`import()` and `import.meta` are not available in tsq loops: a loop is one file");
  const required = requireCall(ast);
  if (required) return located(required, "`require(" + shownArgument(required) + ")` is not available in tsq loops: a loop is one file and loads no modules; " + HOST_API);
  if (!exportsSomething && !/\b(module\.exports|exports)\b/.test(source)) {
    return { error: "the handler exports no function; write `export default async function (event, ctx) { … }` or `module.exports = async (event, ctx) => …`", line: 1, col: 1 };
  }
  let body = applyEdits(source, edits);
  if (body.startsWith("#!")) body = "//" + body.slice(2);
  const strict = isModule ? '"use strict";' : "";
  const code = "(async function (module, exports) {" + strict + body + "\n;" + tail.join("") + "\n})";
  return { code: code, module: isModule };
}

function rewriteTopLevel(node, edits, tail) {
  if (node.type === "ImportDeclaration") {
    return located(node, "`import` is not available in tsq loops: a loop is one file; " + HOST_API);
  }
  if (node.type === "ExportAllDeclaration" || (node.type === "ExportNamedDeclaration" && node.source)) {
    return located(node, "re-exporting from another module is not available in tsq loops: a loop is one file");
  }
  if (node.type === "ExportDefaultDeclaration") {
    const declaration = node.declaration;
    const named = (declaration.type === "FunctionDeclaration" || declaration.type === "ClassDeclaration") && declaration.id;
    if (named) {
      edits.push([node.start, declaration.start, ""]);
      tail.push("exports.default = " + declaration.id.name + ";");
    } else {
      edits.push([node.start, declaration.start, "exports.default = "]);
      edits.push([node.end, node.end, ";"]);
    }
  } else if (node.type === "ExportNamedDeclaration" && node.declaration) {
    edits.push([node.start, node.declaration.start, ""]);
    for (const name of declaredNames(node.declaration)) tail.push("exports." + name + " = " + name + ";");
  } else if (node.type === "ExportNamedDeclaration") {
    edits.push([node.start, node.end, ""]);
    for (const spec of node.specifiers) {
      const exported = spec.exported.type === "Literal" ? spec.exported.value : spec.exported.name;
      tail.push("exports[" + JSON.stringify(exported) + "] = " + spec.local.name + ";");
    }
  }
  return null;
}

function declaredNames(declaration) {
  if (declaration.id) return [declaration.id.name];
  const names = [];
  for (const declarator of declaration.declarations || []) collectPatternNames(declarator.id, names);
  return names;
}

function collectPatternNames(pattern, names) {
  if (!pattern) return;
  switch (pattern.type) {
    case "Identifier": names.push(pattern.name); break;
    case "ObjectPattern": for (const p of pattern.properties) collectPatternNames(p.type === "RestElement" ? p.argument : p.value, names); break;
    case "ArrayPattern": for (const e of pattern.elements) collectPatternNames(e, names); break;
    case "RestElement": collectPatternNames(pattern.argument, names); break;
    case "AssignmentPattern": collectPatternNames(pattern.left, names); break;
  }
}

// The first call `require(…)` in the file, unless the file declares a `require` of its own.
// Found in the syntax tree, so `require` in a string or a comment, or `requireX(…)`, is no call.
function requireCall(ast) {
  if (findNode(ast, declaresRequire)) return null;
  const calls = findAll(ast, (n) => n.type === "CallExpression" && n.callee.type === "Identifier" && n.callee.name === "require");
  return calls.length ? calls.reduce((a, b) => (b.start < a.start ? b : a)) : null;
}

function declaresRequire(node) {
  const names = [];
  if (node.type === "VariableDeclarator") collectPatternNames(node.id, names);
  if (/^(Function|Class)(Declaration|Expression)$/.test(node.type) && node.id) names.push(node.id.name);
  if (/Function/.test(node.type) && node.params) for (const p of node.params) collectPatternNames(p, names);
  if (node.type === "CatchClause") collectPatternNames(node.param, names);
  return names.indexOf("require") !== -1;
}

function shownArgument(call) {
  const first = call.arguments[0];
  if (call.arguments.length === 1 && first.type === "Literal" && typeof first.value === "string") return JSON.stringify(first.value);
  if (call.arguments.length === 1 && first.type === "TemplateLiteral" && !first.expressions.length) return JSON.stringify(first.quasis[0].value.cooked);
  return call.arguments.length ? "…" : "";
}

function findAll(root, predicate) {
  const found = [];
  findNode(root, (n) => { if (predicate(n)) found.push(n); return false; });
  return found;
}

function findNode(root, predicate) {
  const stack = [root];
  while (stack.length) {
    const node = stack.pop();
    if (predicate(node)) return node;
    for (const key in node) {
      const value = node[key];
      if (value && typeof value === "object") {
        if (Array.isArray(value)) { for (const item of value) if (item && typeof item.type === "string") stack.push(item); }
        else if (typeof value.type === "string") stack.push(value);
      }
    }
  }
  return null;
}

function applyEdits(source, edits) {
  edits.sort((a, b) => b[0] - a[0] || b[1] - a[1]);
  let out = source;
  for (const [start, end, text] of edits) out = out.slice(0, start) + text + out.slice(end);
  return out;
}

function located(node, message) {
  return { error: message, offset: node.start };
}

function withLineInfo(source, result) {
  if (result.offset !== undefined) {
    const info = acorn.getLineInfo(source, result.offset);
    result.line = info.line;
    result.col = info.column + 1;
    delete result.offset;
  }
  return result;
}

function syntaxError(error) {
  if (error instanceof SyntaxError && error.loc) {
    return { error: "SyntaxError: " + error.message.replace(/ \(\d+:\d+\)$/, ""), line: error.loc.line, col: error.loc.column + 1 };
  }
  throw error;
}
