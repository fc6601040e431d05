// Safe Markdown: the text is HTML-escaped first, then a small subset is turned into markup
// (fenced and inline code, headings, bold, italics, lists, http(s) links, paragraphs).
// Nothing the model writes can become a tag or an attribute of its own.
"use strict";

function escapeHtml(text) {
  return text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;")
    .replace(/"/g, "&quot;").replace(/'/g, "&#39;");
}

function renderInline(escaped) {
  const codes = [];
  let out = escaped.replace(/`([^`\n]+)`/g, (_, code) => {
    codes.push(code);
    return `\u0000${codes.length - 1}\u0000`;
  });
  out = out.replace(/\*\*([^*\n]+)\*\*/g, "<strong>$1</strong>")
    .replace(/(^|[^*])\*([^*\n]+)\*/g, "$1<em>$2</em>")
    .replace(/\[([^\]\n]+)\]\((https?:\/\/[^\s)"]+)\)/g,
             '<a href="$2" target="_blank" rel="noopener noreferrer">$1</a>');
  return out.replace(/\u0000(\d+)\u0000/g, (_, i) => `<code>${codes[Number(i)]}</code>`);
}

function renderMarkdown(source) {
  const lines = escapeHtml(source).split("\n");
  const html = [];
  let paragraph = [];
  let list = null;
  const flush = () => {
    if (paragraph.length) html.push(`<p>${renderInline(paragraph.join("<br>"))}</p>`);
    paragraph = [];
    if (list) html.push(`</${list}>`);
    list = null;
  };
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    const fence = line.match(/^```\s*([\w+-]*)\s*$/);
    if (fence) {
      flush();
      const body = [];
      i++;
      while (i < lines.length && !/^```\s*$/.test(lines[i])) body.push(lines[i++]);
      const lang = fence[1] ? ` class="language-${fence[1]}"` : "";
      html.push(`<pre><code${lang}>${body.join("\n")}</code></pre>`);
      continue;
    }
    const heading = line.match(/^(#{1,4})\s+(.*)$/);
    const item = line.match(/^\s*(?:([-*])|(\d+)\.)\s+(.*)$/);
    if (heading) {
      flush();
      const level = heading[1].length + 2;
      html.push(`<h${level}>${renderInline(heading[2])}</h${level}>`);
    } else if (item) {
      if (paragraph.length) { const l = list; list = null; flush(); list = l; }
      const kind = item[2] ? "ol" : "ul";
      if (list !== kind) { if (list) html.push(`</${list}>`); html.push(`<${kind}>`); list = kind; }
      html.push(`<li>${renderInline(item[3])}</li>`);
    } else if (!line.trim()) {
      flush();
    } else {
      if (list) { html.push(`</${list}>`); list = null; }
      paragraph.push(line);
    }
  }
  flush();
  return html.join("");
}
