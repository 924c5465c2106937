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
        EditorView.updateListener.of((update) => {
          if (update.docChanged) {
            textarea.value = update.state.doc.toString();
            sayEmpty(false);
          }
        }),
      ],
    });
    textarea.style.display = "none";
    textarea.insertAdjacentElement("afterend", view.dom);
    view.dom.classList.add("code-editor");
    sayEmpty = refuseEmpty(textarea, view);
    window.codeEditors = window.codeEditors || {};
    window.codeEditors[textarea.name] = view;
  });
}

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
