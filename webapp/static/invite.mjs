// The admin's "Invite someone" box of a home: it asks the sign-in API for a
// one-time invite (POST /api/signin/create, with the admin's token) and shows
// its link, a copy button and its QR code, for the invited person to open on
// their phone; and it lists the members' signed-in phones, each with a
// button that signs it out (docs/webapp.md).

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
  const phones = el('ul', { class: 'phones', 'aria-live': 'polite' });
  const show = el('button', { type: 'button', class: 'secondary', text: 'Show signed-in phones' });
  show.addEventListener('click', () => listPhones(home, token, phones));
  return el('details', { class: 'invite', 'data-invite': home },
    el('summary', { text: 'Invite someone' }),
    el('p', { class: 'fine', text: 'The link works once, for 15 minutes, on the phone that opens it; that phone then stays signed in until you sign it out below.' }),
    el('div', { class: 'invite-form' }, role, button), out,
    el('div', { class: 'invite-form' }, show), phones);
}

/** call posts to the sign-in API with the admin's token and returns its JSON answer. */
async function call(what, body, token) {
  if (!token) throw new Error('not signed in');
  const res = await fetch(`/api/signin/${what}`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', Accept: 'application/json', Authorization: `Bearer ${token}` },
    body: JSON.stringify(body),
    cache: 'no-store',
    credentials: 'omit',
    redirect: 'error',
  });
  const a = res.status === 204 ? {} : await res.json().catch(() => ({}));
  if (!res.ok) throw new Error(a.error_description || `the sign-in API answered ${res.status}`);
  return a;
}

/** listPhones shows the members' signed-in phones, each with a Sign out button. */
async function listPhones(home, token, list) {
  let a;
  try {
    a = await call('list', { home }, token());
  } catch (e) {
    list.replaceChildren(el('li', { class: 'error', text: 'Could not list the phones. Try again.' }, details(e.message)));
    return;
  }
  if (a.signins.length === 0) {
    list.replaceChildren(el('li', { text: 'No phone is signed in by invite.' }));
    return;
  }
  list.replaceChildren(...a.signins.map((s) => {
    const out = el('button', { type: 'button', class: 'secondary', 'data-signin': s.id, text: 'Sign out' });
    const li = el('li', {}, el('span', { text: `${s.user} — ${s.device || 'a device'}, last used ${formatTime(Date.parse(s.last_used))} ` }), out);
    out.addEventListener('click', async () => {
      out.disabled = true;
      try {
        await call('remove', { home, id: s.id }, token());
        li.replaceChildren(`${s.user} — ${s.device || 'a device'}: signed out. It needs a new invite to come back.`);
      } catch (e) {
        out.disabled = false;
        li.append(details(e.message));
      }
    });
    return li;
  }));
}

async function create(home, role, token) {
  const a = await call('create', { home, role }, token);
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
