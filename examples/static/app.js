// evicorn examples/static: shows what the server answered for this page.
"use strict";

async function showFacts() {
  const show = (id, value) => {
    document.getElementById(id).textContent = value || "(none)";
  };
  try {
    const res = await fetch(location.href, { method: "HEAD", cache: "no-store" });
    show("encoding", res.headers.get("content-encoding"));
    show("etag", res.headers.get("etag"));
    show("modified", res.headers.get("last-modified"));
  } catch (err) {
    show("encoding", String(err));
  }
}

showFacts();
