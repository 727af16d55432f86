// The "root cause" / "not it" buttons: post the verdict to the API, show what was recorded.
// Served as a file (the page's Content-Security-Policy allows no inline script).
"use strict";

function record(button) {
  const section = button.closest("section.suspects");
  const article = button.closest("article.suspect");
  const status = article.querySelector(".status");
  const id = section.dataset.investigation;
  const sha = button.dataset.sha;
  const body = button.dataset.verdict === "root_cause" ? {root_cause: sha} : {not: [sha]};
  for (const b of article.querySelectorAll("button.feedback")) b.disabled = true;
  status.textContent = "recording…";
  fetch("/api/investigations/" + encodeURIComponent(id) + "/feedback", {
    method: "POST",
    credentials: "same-origin",
    headers: {"Content-Type": "application/json"},
    body: JSON.stringify(body),
  }).then(async (response) => {
    const data = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error(data.error || ("HTTP " + response.status));
    const what = button.dataset.verdict === "root_cause" ? "root cause" : "not it";
    status.textContent = "recorded: " + what;
    article.classList.remove("marked-root", "marked-not");
    article.classList.add(button.dataset.verdict === "root_cause" ? "marked-root" : "marked-not");
    if (button.dataset.verdict === "root_cause") {
      // a later root cause supersedes an earlier one: only one row stays marked
      for (const other of document.querySelectorAll("article.marked-root")) {
        if (other !== article) {
          other.classList.remove("marked-root");
          other.querySelector(".status").textContent = "";
        }
      }
    }
  }).catch((error) => {
    status.textContent = "not recorded: " + error.message;
  }).finally(() => {
    for (const b of article.querySelectorAll("button.feedback")) b.disabled = false;
  });
}

document.addEventListener("DOMContentLoaded", () => {
  for (const button of document.querySelectorAll("button.feedback")) {
    button.addEventListener("click", () => record(button));
  }
});
