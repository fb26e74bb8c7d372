"""The report page's stylesheet: a narrow, quiet layout so the figures carry the page."""

from __future__ import annotations

CSS = """
:root { --ink: #1d2b36; --muted: #5c6b77; --line: #dde3e8; --accent: #264653; --warn: #9a4b00; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif;
       color: var(--ink); background: #fafbfc; }
header, main, footer, nav { max-width: 1280px; margin: 0 auto; padding: 0 24px; }
header h1 { font-size: 26px; margin: 28px 0 12px; }
nav { position: sticky; top: 0; z-index: 5; background: #fafbfcee; border-bottom: 1px solid var(--line);
      padding-top: 8px; padding-bottom: 8px; }
nav a { color: var(--accent); margin-right: 18px; text-decoration: none; font-weight: 600; }
section { background: white; border: 1px solid var(--line); border-radius: 8px; margin: 22px 0; padding: 6px 20px 16px; }
h2 { font-size: 20px; margin: 14px 0 6px; }
h3 { font-size: 16px; margin: 16px 0 4px; }
figure { margin: 10px 0 18px; }
.caption { color: var(--muted); margin: 4px 0 6px; }
.note { color: var(--warn); margin: 6px 0; }
table.runs { border-collapse: collapse; width: 100%; font-size: 13px; margin-bottom: 14px; }
table.runs th, table.runs td { border-bottom: 1px solid var(--line); padding: 4px 8px; text-align: left;
                               vertical-align: top; }
table.runs td:last-child { color: var(--muted); word-break: break-all; }
table.runs tr.note td { color: var(--warn); }
.examples { display: flex; flex-wrap: wrap; gap: 24px; }
.examples img { image-rendering: pixelated; border: 1px solid var(--line); max-width: 100%; }
.players { display: grid; grid-template-columns: repeat(auto-fill, minmax(260px, 1fr)); gap: 4px 12px; margin-top: 8px; }
.clip { display: flex; align-items: center; gap: 8px; font-size: 12px; color: var(--muted); }
.clip audio { height: 28px; width: 170px; }
footer { color: var(--muted); font-size: 12px; padding-bottom: 30px; }
"""
