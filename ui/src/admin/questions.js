// A program's application questions as the questions editor edits them: choices as one line
// of comma-separated text, and back to what programs.questions stores.

export const KINDS = [
  ["text", "Text"],
  ["choice", "Choice"],
  ["url", "Web address"],
];

/** toRows turns stored questions into editable rows. */
export function toRows(questions) {
  return (Array.isArray(questions) ? questions : []).map((q) => ({
    id: q.id || "", label: q.label || "", kind: q.kind || "text", required: !!q.required,
    choices: (q.choices || []).join(", "),
  }));
}

/** fromRows turns rows back into questions: choices only for choice questions, split on commas. */
export function fromRows(rows) {
  return rows.map((r) => {
    const q = { id: r.id.trim(), label: r.label.trim(), kind: r.kind, required: !!r.required };
    if (r.kind === "choice") q.choices = r.choices.split(",").map((c) => c.trim()).filter(Boolean);
    return q;
  });
}

/** idFrom suggests a question id from its label: lowercase words joined by underscores. */
export function idFrom(label, taken = []) {
  let base = String(label).toLowerCase().normalize("NFKD").replace(/[^a-z0-9]+/g, "_").replace(/^_+|_+$/g, "").slice(0, 28) || "question";
  let id = base;
  for (let n = 2; taken.includes(id); n++) id = `${base}_${n}`;
  return id;
}

/** rowErrors spreads the server's errors (questions[i].field) over the rows: [{field: message}]. */
export function rowErrors(errors, count) {
  const out = Array.from({ length: count }, () => ({}));
  for (const [key, msg] of Object.entries(errors || {})) {
    const m = /^questions\[(\d+)\]\.(\w+)$/.exec(key);
    if (m && out[Number(m[1])]) out[Number(m[1])][m[2]] = msg;
  }
  return out;
}

/** answerList pairs an affiliate's answers with the program's questions, in the questions'
 * order, then answers to questions since removed (labelled by their id). */
export function answerList(questions, answers) {
  const given = answers && typeof answers === "object" && !Array.isArray(answers) ? answers : {};
  const out = [];
  const seen = new Set();
  for (const q of Array.isArray(questions) ? questions : []) {
    seen.add(q.id);
    if (given[q.id] !== undefined && given[q.id] !== "") out.push({ id: q.id, label: q.label, kind: q.kind, value: String(given[q.id]) });
  }
  for (const [id, v] of Object.entries(given)) if (!seen.has(id) && v !== "") out.push({ id, label: id, kind: "text", value: String(v) });
  return out;
}
