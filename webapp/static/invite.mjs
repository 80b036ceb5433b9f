// The admin's "Invite someone" box of a home: it asks the sign-in API for a
// one-time invite (POST /api/signin/create, with the admin's token) and shows
// its link, a copy button and its QR code, for the invited person to open on
// their phone (docs/webapp.md).

import { details, el } from './dom.mjs';
import { formatTime } from './model.mjs';

const ROLES = [
  ['member', 'Member — sees and controls the home'],
  ['viewer', 'Viewer — only watches'],
  ['admin', 'Admin — also invites and removes people'],
];

/** inviteBox makes the box for home; token() is the admin's current token. */
export function inviteBox(home, token) {
  const role = el('select', { 'aria-label': 'role of the person invited' },
    ...ROLES.map(([v, text]) => el('option', { value: v, text })));
  const out = el('div', { class: 'invite-out', 'aria-live': 'polite' });
  const button = el('button', { type: 'button', text: 'Create invite link' });
  button.addEventListener('click', async () => {
    button.disabled = true;
    out.replaceChildren('Creating…');
    try {
      out.replaceChildren(...await create(home, role.value, token()));
    } catch (e) {
      out.replaceChildren(el('p', { class: 'error', text: 'Could not create an invite. Try again; if it persists, sign in again.' }), details(e.message));
    } finally {
      button.disabled = false;
    }
  });
  return el('details', { class: 'invite', 'data-invite': home },
    el('summary', { text: 'Invite someone' }),
    el('p', { class: 'fine', text: 'The link works once, for 15 minutes, on the phone that opens it; that phone then stays signed in until you remove it (homemq member signins).' }),
    el('div', { class: 'invite-form' }, role, button), out);
}

async function create(home, role, token) {
  if (!token) throw new Error('not signed in');
  const res = await fetch('/api/signin/create', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', Accept: 'application/json', Authorization: `Bearer ${token}` },
    body: JSON.stringify({ home, role }),
    cache: 'no-store',
    credentials: 'omit',
    redirect: 'error',
  });
  const a = await res.json().catch(() => ({}));
  if (!res.ok) throw new Error(a.error_description || `the sign-in API answered ${res.status}`);
  const link = `${location.origin}/#invite=${a.invite}`;
  const field = el('input', { class: 'invite-link', readonly: '', value: link, 'aria-label': 'invite link' });
  const copy = el('button', { type: 'button', text: 'Copy' });
  copy.addEventListener('click', async () => {
    try {
      await navigator.clipboard.writeText(link);
      copy.textContent = 'Copied';
    } catch {
      field.select();
    }
  });
  return [
    el('p', { text: `For ${a.user} as ${a.role}, works once until ${formatTime(Date.parse(a.expires))}:` }),
    el('div', { class: 'invite-form' }, field, copy),
    el('img', { class: 'invite-qr', src: a.qr, alt: 'QR code of the invite link', width: '200', height: '200' }),
  ];
}
