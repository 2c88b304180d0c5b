// scrollable is a Svelte action for a wide table's wrapper: while its content overflows, it is
// a labelled region that the keyboard can focus and scroll (axe: scrollable-region-focusable).
export function scrollable(node) {
  const update = () => {
    if (node.scrollWidth > node.clientWidth + 1) {
      node.tabIndex = 0;
      node.setAttribute("role", "region");
      const heading = node.closest("section")?.querySelector("h2");
      node.setAttribute("aria-label", (heading?.textContent.trim() || "Table") + " (scrolls sideways)");
    } else {
      node.removeAttribute("tabindex");
      node.removeAttribute("role");
      node.removeAttribute("aria-label");
    }
  };
  const ro = new ResizeObserver(update);
  ro.observe(node);
  const mo = new MutationObserver(update);
  mo.observe(node, { childList: true, subtree: true });
  update();
  return { destroy() { ro.disconnect(); mo.disconnect(); } };
}
