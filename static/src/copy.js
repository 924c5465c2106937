// Copy buttons: <button type="button" data-copy="ID"> copies the text of the element with that
// id (an input's value) and says "Copied" in the element marked data-copy-status="ID", which
// should be aria-live="polite" so that screen readers hear it. One listener on the document, so
// buttons that htmx swaps in work too; no inline handlers (the Content-Security-Policy forbids them).

const SHOWN_MS = 3000;

function textOf(target) {
  return "value" in target && typeof target.value === "string" ? target.value : target.textContent.trim();
}

// Without the Clipboard API (a page served over plain HTTP from another host) the text is selected
// instead, for the user to copy with the keyboard.
async function copy(target) {
  const text = textOf(target);
  if (navigator.clipboard && window.isSecureContext) {
    await navigator.clipboard.writeText(text);
    return true;
  }
  const range = document.createRange();
  range.selectNodeContents(target);
  const selection = window.getSelection();
  selection.removeAllRanges();
  selection.addRange(range);
  return false;
}

function say(id, button, message) {
  const status = document.querySelector(`[data-copy-status="${CSS.escape(id)}"]`);
  if (status) status.textContent = message;
  button.dataset.copied = "true";
  clearTimeout(button.copyTimer);
  button.copyTimer = setTimeout(() => {
    delete button.dataset.copied;
    if (status) status.textContent = "";
  }, SHOWN_MS);
}

document.addEventListener("click", async (event) => {
  const button = event.target.closest("[data-copy]");
  if (!button) return;
  const id = button.dataset.copy;
  const target = document.getElementById(id);
  if (!target) return;
  try {
    say(id, button, (await copy(target)) ? "Copied" : "Selected: press Ctrl+C to copy");
  } catch {
    say(id, button, "Could not copy: select the text and copy it");
  }
});
