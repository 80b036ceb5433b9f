// DOM helpers of the homemq web app: elements built from properties (never
// HTML strings: the CSP enforces Trusted Types), the "details" toggle and
// the activity log.

import { formatTime, reasonText } from './model.mjs';

const LOG_MAX = 50;

/** $ is the element with that id. */
export const $ = (id) => document.getElementById(id);

/** el makes an element: props text, class, data-*, aria-*, on: {event: fn}. */
export function el(tag, props = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (v === undefined) continue;
    if (k === 'text') e.textContent = v;
    else if (k === 'class') e.className = v;
    else if (k === 'on') for (const [ev, fn] of Object.entries(v)) e.addEventListener(ev, fn);
    else e.setAttribute(k, v);
  }
  e.append(...children);
  return e;
}

/** details is the "details" toggle that holds protocol words for the curious. */
export function details(text) {
  return el('details', { class: 'details' }, el('summary', { text: 'details' }), el('code', { text }));
}

/** log adds a line to the activity log, newest first, with optional details. */
export function log(text, kind = 'info', detail = '') {
  const li = el('li', { class: kind }, el('time', { text: formatTime(Date.now()) }), ' ', text);
  if (detail) li.append(' ', details(detail));
  const list = $('log');
  list.prepend(li);
  while (list.children.length > LOG_MAX) list.lastElementChild.remove();
}

/** describe is a broker verdict in protocol words: "0x87 not authorized: …". */
export function describe(res) {
  return res.code !== undefined ? `${reasonText(res.code)}: ${res.reason}` : res.reason;
}
