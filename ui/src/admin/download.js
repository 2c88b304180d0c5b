// download fetches a file from an authenticated route (the token goes in a header, which a
// plain link cannot send) and hands it to the browser as a download.
export async function download(pb, path, query, filename) {
  const url = pb.buildURL(path) + (query ? "?" + new URLSearchParams(query) : "");
  const res = await fetch(url, { headers: { Authorization: pb.authStore.token } });
  if (!res.ok) {
    let msg = `The server answered ${res.status}.`;
    try { msg = (await res.json()).message || msg; } catch { /* not JSON */ }
    throw new Error(msg);
  }
  const blob = await res.blob();
  const a = document.createElement("a");
  a.href = URL.createObjectURL(blob);
  a.download = filename;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 10_000);
  return blob.size;
}
