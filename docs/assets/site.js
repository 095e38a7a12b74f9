// Render the math that pymdownx.arithmatex marks up (class "arithmatex"),
// with the KaTeX copy the site serves itself. Material's document$ fires on
// the first load and after every instant navigation, so new pages get
// rendered too.
(function () {
  function renderMath(root) {
    root.querySelectorAll(".arithmatex").forEach(function (el) {
      if (el.dataset.rendered) return;
      var tex = el.textContent.trim();
      var display = el.tagName === "DIV";
      // arithmatex (generic mode) wraps inline math in \( \) and blocks in \[ \]
      tex = tex.replace(/^\\[(\[]/, "").replace(/\\[)\]]$/, "");
      katex.render(tex, el, { displayMode: display, throwOnError: true });
      el.dataset.rendered = "1";
    });
  }
  // Notebook pages (mkdocs-jupyter) keep TeX as $...$ in their Markdown cells.
  function renderNotebookMath(root) {
    root.querySelectorAll(".jupyter-wrapper .jp-RenderedMarkdown").forEach(function (el) {
      renderMathInElement(el, {
        delimiters: [
          { left: "$$", right: "$$", display: true },
          { left: "$", right: "$", display: false }
        ],
        throwOnError: true
      });
    });
  }
  if (typeof document$ !== "undefined") {
    document$.subscribe(function () { renderMath(document.body); renderNotebookMath(document.body); });
  } else {
    document.addEventListener("DOMContentLoaded", function () { renderMath(document.body); });
  }
})();

// Accessible names for two theme widgets that ship without one
// (axe: aria-dialog-name, aria-progressbar-name).
(function () {
  function name(selector, label) {
    var el = document.querySelector(selector);
    if (el && !el.hasAttribute("aria-label")) el.setAttribute("aria-label", label);
  }
  name(".md-search[role=dialog]", "Search");
  name(".md-progress[role=progressbar]", "Page loading");
})();
