// What each status decision on an affiliate does, for buttons and confirmations. The server
// queues the approval and rejection emails (hooks/messaging_events.go) on the status change.
export const decisions = {
  approved: { verb: "Approve", done: "Approved", mail: "The approval email with their link is sent." },
  rejected: { verb: "Reject", done: "Rejected", mail: "The rejection email is sent." },
  suspended: { verb: "Suspend", done: "Suspended", mail: "No email is sent; their links stop crediting clicks and payouts skip them." },
  reinstate: { verb: "Reinstate", done: "Reinstated", mail: "No email is sent; their links credit clicks again." },
};

/**
 * actionsFor lists the decisions that make sense for an affiliate: [key, target status]. An
 * erased affiliate has none: erasure is final (the server refuses any status change).
 */
export function actionsFor(affiliate) {
  if (affiliate.erased_at) return [];
  switch (affiliate.status) {
    case "pending": return [["approved", "approved"], ["rejected", "rejected"]];
    case "approved": return [["suspended", "suspended"]];
    case "suspended": return [["reinstate", "approved"]];
    case "rejected": return [["approved", "approved"]];
    default: return [];
  }
}
