// kubectl's `-o jsonpath=` templates, as far as the cluster's scripts use them: literal text,
// `{"..."}` strings with escapes, field paths (`.a.b`, `kubernetes\.io/name` with an escaped dot,
// `[*]`, `[n]`, `@`, `$`) and `{range PATH}...{end}`, nested. A path with several results prints them
// separated by spaces, as kubectl does. Anything else is refused by name, so a script that starts to
// use more of the syntax fails loudly instead of reading an empty answer.

type Segment = { kind: "field"; name: string } | { kind: "all" } | { kind: "index"; index: number };
type Path = { root: "current" | "root"; segments: Segment[] };
type Node = { kind: "text"; text: string } | { kind: "path"; path: Path } | { kind: "range"; path: Path; body: Node[] };

export class JsonPathError extends Error {
  override name = "JsonPathError";
}

function parsePath(expr: string): Path {
  let i = 0;
  let root: Path["root"] = "current";
  if (expr[0] === "$") {
    root = "root";
    i = 1;
  } else if (expr[0] === "@") {
    i = 1;
  }
  const segments: Segment[] = [];
  while (i < expr.length) {
    const c = expr[i];
    if (c === ".") {
      i++;
      let name = "";
      while (i < expr.length && expr[i] !== "." && expr[i] !== "[") {
        if (expr[i] === "\\" && i + 1 < expr.length) {
          name += expr[i + 1];
          i += 2;
        } else {
          name += expr[i++];
        }
      }
      if (name === "") throw new JsonPathError(`jsonpath "${expr}": an empty field name (recursive descent is not modelled)`);
      segments.push({ kind: "field", name });
    } else if (c === "[") {
      const close = expr.indexOf("]", i);
      if (close < 0) throw new JsonPathError(`jsonpath "${expr}": unclosed [`);
      const inner = expr.slice(i + 1, close).trim();
      if (inner === "*") segments.push({ kind: "all" });
      else if (/^-?\d+$/.test(inner)) segments.push({ kind: "index", index: Number(inner) });
      else throw new JsonPathError(`jsonpath "${expr}": [${inner}] is not modelled (accepted: [*], [n])`);
      i = close + 1;
    } else {
      throw new JsonPathError(`jsonpath "${expr}": unexpected "${c}" at ${i}`);
    }
  }
  return { root, segments };
}

function unquote(literal: string): string {
  return literal.slice(1, -1).replace(/\\(.)/g, (_, ch: string) => ({ n: "\n", t: "\t", r: "\r" })[ch] ?? ch);
}

/** Splits a template into text and `{...}` actions (a `}` inside a quoted string does not close one). */
function tokens(template: string): { kind: "text" | "action"; value: string }[] {
  const out: { kind: "text" | "action"; value: string }[] = [];
  let i = 0;
  let text = "";
  while (i < template.length) {
    if (template[i] !== "{") {
      text += template[i++];
      continue;
    }
    if (text) out.push({ kind: "text", value: text });
    text = "";
    let j = i + 1;
    let quoted = false;
    while (j < template.length && (quoted || template[j] !== "}")) {
      if (template[j] === "\\" && quoted) j++;
      else if (template[j] === '"') quoted = !quoted;
      j++;
    }
    if (j >= template.length) throw new JsonPathError(`jsonpath template: unclosed { at ${i}`);
    out.push({ kind: "action", value: template.slice(i + 1, j).trim() });
    i = j + 1;
  }
  if (text) out.push({ kind: "text", value: text });
  return out;
}

export function parseTemplate(template: string): Node[] {
  const stack: Node[][] = [[]];
  const ranges: { path: Path; body: Node[] }[] = [];
  for (const t of tokens(template)) {
    const top = stack[stack.length - 1]!;
    if (t.kind === "text") top.push({ kind: "text", text: t.value });
    else if (t.value.startsWith('"')) top.push({ kind: "text", text: unquote(t.value) });
    else if (t.value.startsWith("range ")) {
      const range = { path: parsePath(t.value.slice(6).trim()), body: [] as Node[] };
      top.push({ kind: "range", ...range });
      ranges.push(range);
      stack.push(range.body);
    } else if (t.value === "end") {
      if (ranges.length === 0) throw new JsonPathError("jsonpath template: {end} without {range}");
      ranges.pop();
      stack.pop();
    } else {
      top.push({ kind: "path", path: parsePath(t.value) });
    }
  }
  if (ranges.length > 0) throw new JsonPathError("jsonpath template: {range} without {end}");
  return stack[0]!;
}

function evaluate(path: Path, current: unknown, root: unknown): unknown[] {
  let values = [path.root === "root" ? root : current];
  for (const s of path.segments) {
    const next: unknown[] = [];
    for (const v of values) {
      if (s.kind === "field") {
        if (v && typeof v === "object" && !Array.isArray(v) && s.name in v) next.push((v as Record<string, unknown>)[s.name]);
      } else if (Array.isArray(v)) {
        if (s.kind === "all") next.push(...v);
        else {
          const at = s.index < 0 ? v.length + s.index : s.index;
          if (at >= 0 && at < v.length) next.push(v[at]);
        }
      }
    }
    values = next;
  }
  return values;
}

function print(v: unknown): string {
  if (typeof v === "string") return v;
  if (v === null || v === undefined) return "";
  if (typeof v === "object") return JSON.stringify(v);
  return String(v);
}

function render(nodes: readonly Node[], current: unknown, root: unknown): string {
  let out = "";
  for (const n of nodes) {
    if (n.kind === "text") out += n.text;
    else if (n.kind === "path") out += evaluate(n.path, current, root).map(print).join(" ");
    else for (const item of evaluate(n.path, current, root)) out += render(n.body, item, root);
  }
  return out;
}

/** Applies a kubectl jsonpath template to an object (a List for `get` of several). */
export function jsonpath(template: string, data: unknown): string {
  return render(parseTemplate(template), data, data);
}
