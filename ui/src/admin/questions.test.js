import { test } from "node:test";
import assert from "node:assert/strict";
import { toRows, fromRows, idFrom, rowErrors, answerList } from "./questions.js";

test("rows round-trip, choices only on choice questions", () => {
  const qs = [
    { id: "where", label: "Where?", kind: "text", required: true },
    { id: "channel", label: "Channel", kind: "choice", required: false, choices: ["Blog", "YouTube"] },
  ];
  const rows = toRows(qs);
  assert.equal(rows[1].choices, "Blog, YouTube");
  assert.deepEqual(fromRows(rows), qs);
  rows[0].choices = "ignored";
  rows[1].choices = " A ,, B ";
  assert.deepEqual(fromRows(rows).map((q) => q.choices), [undefined, ["A", "B"]]);
  assert.deepEqual(toRows(null), []);
});

test("ids from labels, unique", () => {
  assert.equal(idFrom("Where will you promote us?"), "where_will_you_promote_us");
  assert.equal(idFrom("Site", ["site"]), "site_2");
  assert.equal(idFrom("???"), "question");
});

test("server errors land on their rows", () => {
  assert.deepEqual(rowErrors({ "questions[1].id": "taken", questions: "too many", "questions[9].kind": "x" }, 2), [{}, { id: "taken" }]);
});

test("answers follow the questions' order; removed questions keep their answers", () => {
  const qs = [{ id: "a", label: "A?" }, { id: "b", label: "B?", kind: "url" }];
  assert.deepEqual(answerList(qs, { b: "https://x.example", old: "kept", a: "" }), [
    { id: "b", label: "B?", kind: "url", value: "https://x.example" },
    { id: "old", label: "old", kind: "text", value: "kept" },
  ]);
  assert.deepEqual(answerList(qs, null), []);
});
