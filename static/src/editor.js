// A CodeMirror editor (Python highlighting) for every <textarea data-code-editor>.
// The textarea stays the form field: the editor writes back to it on every change.
import { basicSetup, EditorView } from "codemirror";
import { indentUnit } from "@codemirror/language";
import { python } from "@codemirror/lang-python";

export function mountEditors(root = document) {
  root.querySelectorAll("textarea[data-code-editor]").forEach((textarea) => {
    if (textarea.dataset.mounted) return;
    textarea.dataset.mounted = "true";
    const view = new EditorView({
      doc: textarea.value,
      extensions: [
        basicSetup,
        python(),
        indentUnit.of("    "), // PEP 8
        EditorView.updateListener.of((update) => {
          if (update.docChanged) textarea.value = update.state.doc.toString();
        }),
      ],
    });
    textarea.style.display = "none";
    textarea.insertAdjacentElement("afterend", view.dom);
    view.dom.classList.add("code-editor");
    window.codeEditors = window.codeEditors || {};
    window.codeEditors[textarea.name] = view;
  });
}
