// A CodeMirror editor for every <textarea data-code-editor="python|text"> (the Code tab's open
// file: Python highlighting for .py, plain text otherwise; read only when the textarea is, as a
// viewer's is). The textarea stays the form field: the editor writes back to it on every change.
// Compile problems (data-lint: the id of a JSON list of {line, column, message}) are marked in
// the editor, as CodeMirror lint diagnostics.
import { basicSetup, EditorView } from "codemirror";
import { EditorState } from "@codemirror/state";
import { indentUnit } from "@codemirror/language";
import { python } from "@codemirror/lang-python";
import { lintGutter, setDiagnostics } from "@codemirror/lint";

// main.js mounts the page's editors, and those of each part htmx swaps in (a file the tree
// opens, a file operation's answer); mounting twice is harmless (data-mounted).
export function mountEditors(root = document) {
  if (root.matches && root.matches("textarea[data-code-editor]")) mount(root);
  root.querySelectorAll("textarea[data-code-editor]").forEach(mount);
}

function mount(textarea) {
  if (textarea.dataset.mounted) return;
  textarea.dataset.mounted = "true";
  const readOnly = textarea.readOnly;
  let sayEmpty = () => {};
  const view = new EditorView({
    doc: textarea.value,
    extensions: [
      basicSetup,
      textarea.dataset.codeEditor === "python" ? python() : [],
      indentUnit.of("    "), // PEP 8
      lintGutter(),
      // CodeMirror styles itself with a <style> element: the Content-Security-Policy lets it in
      // with the page's nonce (see cspNonce).
      EditorView.cspNonce.of(cspNonce()),
      EditorState.readOnly.of(readOnly),
      // The editor is the field now: it takes the hidden textarea's label (its file name).
      EditorView.contentAttributes.of({
        "aria-label": fieldLabel(textarea),
        ...(readOnly ? { "aria-readonly": "true" } : {}),
      }),
      // Through CodeMirror, which rewrites the class attribute when focus changes.
      EditorView.editorAttributes.of({ class: "code-editor" }),
      EditorView.updateListener.of((update) => {
        if (update.docChanged) {
          textarea.value = update.state.doc.toString();
          sayEmpty(false);
          textarea.dispatchEvent(new Event("editor-change"));
        }
      }),
    ],
  });
  // Hidden by attribute, not a style: htmx's history snapshot keeps the page as HTML, and a
  // style attribute read back from it is refused by the Content-Security-Policy.
  textarea.hidden = true;
  textarea.insertAdjacentElement("afterend", view.dom);
  view.dispatch(setDiagnostics(view.state, diagnostics(view.state.doc, problemsOf(textarea))));
  if (!readOnly) {
    sayEmpty = refuseEmpty(textarea, view);
    warnUnsaved(textarea);
    offerUnsaved(textarea, view);
  }
  window.codeEditors = window.codeEditors || {};
  window.codeEditors[textarea.name || textarea.id] = view;
}

// The style nonce of the page's Content-Security-Policy: the workspace page puts it on its
// [data-csp-nonce] element, outside the tab panel, so that a panel htmx swaps in (its answer has
// another nonce, which this document does not accept) cannot replace it. The browser hides the
// attribute once the element is in the page; the nonce property keeps it, for scripts only.
function cspNonce() {
  return document.querySelector("[data-csp-nonce]")?.nonce || "";
}

function problemsOf(textarea) {
  const source = textarea.dataset.lint && document.getElementById(textarea.dataset.lint);
  if (!source) return [];
  try {
    return JSON.parse(source.textContent);
  } catch {
    return [];
  }
}

// Python's line (1-based) and column (1-based, may be missing) as a range of the document: the
// character at the column, else the whole line; a line past the end is the last line.
function diagnostics(doc, problems) {
  return problems.map(({ line, column, message }) => {
    const row = doc.line(Math.min(Math.max(line || 1, 1), doc.lines));
    let from = row.from;
    let to = row.to;
    if (column) {
      from = Math.min(row.from + Math.max(column - 1, 0), row.to);
      to = Math.min(from + 1, row.to);
      if (from === to && row.to > row.from) from = to - 1; // at the end of the line: its last character
    }
    return { from, to, severity: "error", message };
  });
}

// Ctrl-S (Cmd-S) saves the open file, as in an editor, wherever the focus is on the page: the
// form's own submit ("Save", not "Save & deploy"), its checks included.
document.addEventListener("keydown", (event) => {
  if (!(event.ctrlKey || event.metaKey) || event.altKey || event.key.toLowerCase() !== "s") return;
  const textarea = document.querySelector("textarea[data-code-editor][data-mounted]:not([readonly])");
  if (!textarea || !textarea.form) return;
  event.preventDefault();
  const button = textarea.form.querySelector("button[type=submit]:not([name])") || undefined;
  textarea.form.requestSubmit(button);
});

// Edits not saved are never lost without asking. Leaving the page (a link, a reload, closing the
// tab) asks with the browser's own dialog, the only one allowed there. A request that htmx would
// answer by replacing the editor (a file of the tree, a tab, another form of the panel) asks
// with confirm(). Saving the file itself does not ask.
function dirtyEditors() {
  return [...document.querySelectorAll("textarea[data-code-editor][data-unsaved='true']")];
}

function warnUnsaved(textarea) {
  const initial = textarea.value;
  textarea.addEventListener("editor-change", () => {
    textarea.dataset.unsaved = String(textarea.value !== initial);
  });
  // A save without htmx leaves the page: nothing is lost then, so nothing asks.
  textarea.form?.addEventListener("submit", (event) => {
    if (!event.defaultPrevented) textarea.dataset.unsaved = "false";
  });
}

window.addEventListener("beforeunload", (event) => {
  if (dirtyEditors().length > 0) event.preventDefault();
});

// A save sent by htmx: its answer replaces the editor (or, being a whole page, leaves it), so
// nothing is unsaved once it is sent; unless it never got there (the network), then the edits
// are still only here.
function editorsOf(form) {
  return [...document.querySelectorAll("textarea[data-code-editor][data-mounted]")].filter(
    (textarea) => form && textarea.form === form,
  );
}

document.addEventListener("htmx:beforeRequest", (event) => {
  editorsOf(event.detail.elt).forEach((textarea) => (textarea.dataset.unsaved = "false"));
});

for (const failed of ["htmx:sendError", "htmx:timeout"]) {
  document.addEventListener(failed, (event) => {
    editorsOf(event.detail.elt).forEach((textarea) => textarea.dispatchEvent(new Event("editor-change")));
  });
}

document.addEventListener("htmx:confirm", (event) => {
  const { target, elt, question, issueRequest } = event.detail;
  const lost = dirtyEditors().filter((textarea) => target && target.contains(textarea) && textarea.form !== elt);
  if (lost.length === 0) return;
  event.preventDefault();
  const files = lost.map((textarea) => textarea.dataset.path || fieldLabel(textarea)).join(", ");
  const unsaved = `Your changes to ${files} are not saved: leave them?`;
  if (window.confirm(question ? `${question}\n\n${unsaved}` : unsaved)) issueRequest(true);
}); // the dirty editor's own save is sent as usual (its form is elt)

// A save the server refused (the draft changed meanwhile, a file too large…) answers with the
// panel as the draft is: the text that was sent is kept in this tab (sessionStorage) when the
// save is sent, and offered back when the editor of that file comes back with other text.
function keptKey(textarea) {
  return `faas-unsaved:${textarea.form.getAttribute("action") || location.pathname}`;
}

function keep(textarea) {
  try {
    sessionStorage.setItem(keptKey(textarea), textarea.value);
  } catch {
    // storage refused (private mode, full): the save still goes, nothing is offered back
  }
}

function kept(textarea) {
  try {
    return sessionStorage.getItem(keptKey(textarea));
  } catch {
    return null;
  }
}

function forget(textarea) {
  try {
    sessionStorage.removeItem(keptKey(textarea));
  } catch {
    // nothing kept
  }
}

function offerUnsaved(textarea, view) {
  if (!textarea.form) return;
  textarea.form.addEventListener("submit", () => keep(textarea));
  // Kept as it is typed, too: a way out htmx does not ask about (the Back button restores the
  // tab before) loses nothing; the editor of that file offers it back when it comes again.
  textarea.addEventListener("editor-change", () => keep(textarea));
  const text = kept(textarea);
  if (text === null) return;
  if (text === textarea.value) {
    forget(textarea); // saved
    return;
  }
  const offer = document.createElement("p");
  offer.className = "field-error unsaved-offer";
  offer.setAttribute("role", "alert");
  offer.dataset.unsavedOffer = textarea.dataset.path || "";
  offer.textContent = `The text you last sent for ${textarea.dataset.path || "this file"} was not saved. `;
  const restore = button("Put my text back in the editor", "secondary", () => {
    view.dispatch({ changes: { from: 0, to: view.state.doc.length, insert: text } });
    forget(textarea);
    offer.remove();
    view.focus();
  });
  const discard = button("Discard it", "secondary outline", () => {
    forget(textarea);
    offer.remove();
  });
  offer.append(restore, " ", discard);
  view.dom.insertAdjacentElement("beforebegin", offer);
}

function button(label, className, onClick) {
  const element = document.createElement("button");
  element.type = "button";
  element.className = className;
  element.textContent = label;
  element.addEventListener("click", onClick);
  return element;
}

function fieldLabel(textarea) {
  const label = textarea.labels && textarea.labels[0];
  return (label && label.textContent.trim()) || textarea.name;
}

// The hidden textarea cannot take the browser's own "required" check (it is not focusable, so
// the browser refuses the submit without a word): an empty main file is refused here, in words
// under the editor (the message is the panel's, data-empty), and the server refuses it too.
// Listening in the capture phase, before htmx's own listener sends a boosted form.
function refuseEmpty(textarea, view) {
  const message = textarea.dataset.empty;
  if (!message || !textarea.form) return () => {};
  const alert = document.createElement("p");
  alert.className = "field-error";
  alert.setAttribute("role", "alert");
  alert.dataset.editorError = textarea.name;
  alert.hidden = true;
  view.dom.insertAdjacentElement("afterend", alert);
  const say = (empty) => {
    alert.hidden = !empty;
    alert.textContent = empty ? message : "";
    view.contentDOM.setAttribute("aria-invalid", empty ? "true" : "false");
  };
  textarea.form.addEventListener(
    "submit",
    (event) => {
      if (textarea.value.trim()) return;
      event.preventDefault();
      event.stopImmediatePropagation();
      say(true);
      view.focus();
    },
    true,
  );
  return (empty) => {
    if (!empty && !alert.hidden && textarea.value.trim()) say(false);
  };
}
