// Turns a handler file into one function expression that V8 can evaluate as a script.
//
// mini-racer evaluates scripts only, so ES module syntax is rewritten with a real parser (acorn,
// loaded beside this file in a trusted instance): `export default X` becomes
// `exports.default = X`, named exports become assignments appended at the end, and the body is
// wrapped in `async function (module, exports) {…}` so top-level await works. The wrapper opens
// on line 1 so line numbers in stack traces match the user's file.
"use strict";

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
    return located(node, "`import` is not available in tsq loops: a loop is one file; use the globals tsq provides (event, env, console)");
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
