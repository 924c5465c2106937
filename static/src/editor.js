// A CodeMirror editor (Python highlighting) for every <textarea data-code-editor>.
// The textarea stays the form field: the editor writes back to it on every change.
import { basicSetup, EditorView } from "codemirror";
import { indentUnit } from "@codemirror/language";
import { python } from "@codemirror/lang-python";

export function mountEditors(root = document) {
  root.querySelectorAll("textarea[data-code-editor]").forEach((textarea) => {
    if (textarea.dataset.mounted) return;
    textarea.dataset.mounted = "true";
    let sayEmpty = () => {};
    const view = new EditorView({
      doc: textarea.value,
      extensions: [
        basicSetup,
        python(),
        indentUnit.of("    "), // PEP 8
        // The editor is the field now: it takes the hidden textarea's label (its file name).
        EditorView.contentAttributes.of({ "aria-label": fieldLabel(textarea) }),
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
    textarea.style.display = "none";
    textarea.insertAdjacentElement("afterend", view.dom);
    sayEmpty = refuseEmpty(textarea, view);
    warnUnsaved(textarea);
    window.codeEditors = window.codeEditors || {};
    window.codeEditors[textarea.name] = view;
  });
}

// Ctrl-S (Cmd-S) saves the draft, as in an editor, wherever the focus is on the page: the
// form's own submit ("Save draft", not "Save & deploy"), its checks included.
document.addEventListener("keydown", (event) => {
  if (!(event.ctrlKey || event.metaKey) || event.altKey || event.key.toLowerCase() !== "s") return;
  const textarea = document.querySelector("textarea[data-code-editor][data-mounted]");
  if (!textarea || !textarea.form) return;
  event.preventDefault();
  const button = textarea.form.querySelector("button[type=submit]:not([name])") || undefined;
  textarea.form.requestSubmit(button);
});

// Leaving the page (a link, a reload, closing the tab) with edits not saved asks first, as the
// browser does for a form: its own dialog, the only one allowed there. Saving clears it.
let unsaved = 0;
function warnUnsaved(textarea) {
  const initial = textarea.value;
  let dirty = false;
  const mark = (now) => {
    if (now !== dirty) unsaved += now ? 1 : -1;
    dirty = now;
    textarea.dataset.unsaved = String(now);
  };
  const check = () => mark(textarea.value !== initial);
  textarea.addEventListener("editor-change", check);
  const form = textarea.form;
  if (!form) return;
  // The form's other fields (requirements.txt) count too.
  form.addEventListener("input", (event) => event.target !== textarea && mark(true));
  form.addEventListener("submit", (event) => event.defaultPrevented || mark(false));
}

window.addEventListener("beforeunload", (event) => {
  if (unsaved > 0) event.preventDefault();
});

function fieldLabel(textarea) {
  const label = textarea.labels && textarea.labels[0];
  return (label && label.textContent.trim()) || textarea.name;
}

// The hidden textarea cannot take the browser's own "required" check (it is not focusable, so
// the browser refuses the submit without a word): an empty editor is refused here, in words
// under the editor (the message is the form's, data-empty), and the server refuses it too.
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
  textarea.form.addEventListener("submit", (event) => {
    if (textarea.value.trim()) return;
    event.preventDefault();
    say(true);
    view.focus();
  });
  return (empty) => {
    if (!empty && !alert.hidden && textarea.value.trim()) say(false);
  };
}
