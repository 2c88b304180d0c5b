package collections

// ConversionImported marks a sale a superuser imported from history: its occurred_at may be
// older than the program's attribution window. Its commission is still held from when it was
// recorded (docs/data-model.md).
const ConversionImported = "imported"
