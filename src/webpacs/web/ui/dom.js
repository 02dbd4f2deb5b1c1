// Small DOM helpers: element building, dialogs and notices.

/**
 * ``h('a.button', {href}, 'text', child, ...)``: an element with classes (``.x``), an id
 * (``#x``), attributes or properties (``on*`` are listeners), and children (strings are text).
 */
export function h(spec, attrs = {}, ...children) {
  const [tag, ...rest] = spec.split(/(?=[.#])/);
  const el = document.createElement(tag || 'div');
  for (const part of rest) {
    if (part[0] === '.') el.classList.add(part.slice(1));
    else el.id = part.slice(1);
  }
  for (const [key, value] of Object.entries(attrs ?? {})) {
    if (value == null || value === false) continue;
    if (key.startsWith('on')) el.addEventListener(key.slice(2).toLowerCase(), value);
    else if (key === 'dataset') Object.assign(el.dataset, value);
    else if (key in el && typeof value !== 'string') el[key] = value;
    else el.setAttribute(key, value === true ? '' : value);
  }
  el.append(...children.flat(Infinity).filter((c) => c != null && c !== false));
  return el;
}

/** Replace the page's content. */
export function show(...nodes) {
  const app = document.getElementById('app');
  app.replaceChildren(...nodes);
  window.scrollTo(0, 0);
}

export function toast(message, kind = 'info') {
  const box = h(`div.toast.${kind}`, { role: kind === 'error' ? 'alert' : 'status' }, message);
  document.getElementById('toasts').append(box);
  setTimeout(() => box.remove(), kind === 'error' ? 10000 : 4000);
}

/**
 * A modal dialog: ``title``, ``body`` (nodes), buttons ``[{label, kind, value}]``. Resolves to
 * the ``value`` of the button pressed (``null`` on Escape).
 */
export function dialog(title, body, buttons, { wide = false } = {}) {
  return new Promise((resolve) => {
    const dlg = h(`dialog.dialog${wide ? '.wide' : ''}`, { 'aria-label': title });
    const close = (value) => { dlg.close(); dlg.remove(); resolve(value); };
    dlg.append(
      h('header', {}, h('h2', {}, title), h('button.icon', { type: 'button', 'aria-label': 'Close', onclick: () => close(null) }, '×')),
      h('div.dialog-body', {}, body),
      h('footer', {}, buttons.map((b) => h(`button.${b.kind || 'secondary'}`, { type: 'button', onclick: () => close(b.value) }, b.label))),
    );
    dlg.addEventListener('cancel', (e) => { e.preventDefault(); close(null); });
    document.body.append(dlg);
    dlg.showModal();
  });
}

/** Ask before something that cannot be undone; resolves true when confirmed. */
export async function confirmDanger(title, message, action) {
  const answer = await dialog(title, [h('p', {}, message), h('p.warning-text', {}, 'This cannot be undone.')], [
    { label: 'Cancel', kind: 'secondary', value: false },
    { label: action, kind: 'danger', value: true },
  ]);
  return answer === true;
}

export function progressBar(fraction = 0, kind = '') {
  const bar = h(`div.progress${kind ? `.${kind}` : ''}`, { role: 'progressbar', 'aria-valuemin': '0', 'aria-valuemax': '100' }, h('span'));
  setProgress(bar, fraction, kind);
  return bar;
}

export function setProgress(bar, fraction, kind) {
  const pct = Math.round(Math.max(0, Math.min(1, fraction)) * 100);
  bar.firstChild.style.width = `${pct}%`;
  bar.setAttribute('aria-valuenow', String(pct));
  if (kind !== undefined) bar.className = `progress${kind ? ` ${kind}` : ''}`;
}
