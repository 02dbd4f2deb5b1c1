// A study's page: who and what it is, its series with thumbnails and counts, each series'
// instances with their metadata, and what can be done with it: open in the viewer, download a
// ZIP, send to an AE, delete.

import { paths, qido, remove, send, thumbnailUrl, zipUrl } from './api.js';
import { date, text, time, values } from './dicom.js';
import { confirmDanger, h, progressBar, setProgress, show, toast } from './dom.js';
import { instanceTable } from './instances.js';

function facts(pairs) {
  return h('dl.facts', {}, pairs.filter(([, v]) => v).map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]));
}

function seriesLabel(series) {
  const number = text(series, 'SeriesNumber');
  return [number ? `Series ${number}` : 'Series', text(series, 'Modality')].filter(Boolean).join(' · ');
}

function sendPanel(study, settings) {
  if (!settings.aes.length) return null;
  const select = h('select', { 'aria-label': 'Destination AE' },
    settings.aes.map((ae) => h('option', { value: ae.name },
      `${ae.name}${ae.description ? ` (${ae.description})` : ''} — ${ae.title}@${ae.host}:${ae.port}`)));
  const bar = progressBar(0);
  const status = h('span.send-status', {}, '');
  const failures = h('ul.failures');
  const row = h('div.send-progress', { hidden: true }, bar, status);
  const button = h('button.secondary', { type: 'button' }, 'Send');
  button.addEventListener('click', async () => {
    button.disabled = true;
    row.hidden = false;
    failures.replaceChildren();
    setProgress(bar, 0, '');
    status.textContent = 'Connecting…';
    const ae = select.value;
    try {
      const end = await send(study, null, ae, (ev) => {
        if (ev.event === 'start') status.textContent = `Sending ${ev.total} instance(s) to ${ev.destination}…`;
        if (ev.event === 'instance') {
          setProgress(bar, (ev.sent + ev.failed) / ev.total, ev.failed ? 'warn' : '');
          status.textContent = `${ev.sent + ev.failed} of ${ev.total}: ${ev.sent} sent, ${ev.failed} failed`;
          if (ev.category === 'Failure') failures.append(h('li', {}, `${ev.sop}: ${ev.message}`));
        }
      });
      const ok = !end.error && end.failed === 0;
      setProgress(bar, 1, ok ? 'done' : 'failed');
      status.textContent = end.error
        ? `Stopped: ${end.error} (${end.sent} of ${end.total} sent)`
        : `Done: ${end.sent} of ${end.total} sent to ${ae}${end.failed ? `, ${end.failed} failed` : ''}.`;
      status.dataset.outcome = ok ? 'done' : 'failed';
    } catch (e) {
      setProgress(bar, 1, 'failed');
      status.textContent = `The send failed: ${e.message}`;
      status.dataset.outcome = 'failed';
    } finally {
      button.disabled = false;
    }
  });
  return h('div.send', {}, h('label.inline', {}, h('span', {}, 'Send to'), select), button, row, failures);
}

const plural = (n, word) => `${n} ${word}${String(n) === '1' ? '' : 's'}`;

function seriesRow(studyUid, patient, series, settings, reload) {
  const uid = text(series, 'SeriesInstanceUID');
  const count = text(series, 'NumberOfSeriesRelatedInstances');
  const thumb = h('img.thumb', { src: thumbnailUrl(studyUid, uid), alt: `Thumbnail of ${seriesLabel(series)}`, loading: 'lazy', width: 96, height: 96 });
  const placeholder = h('div.thumb.none', { hidden: true }, text(series, 'Modality') || '—');
  thumb.addEventListener('error', () => { thumb.hidden = true; placeholder.hidden = false; });
  const instances = h('div.instances', { hidden: true });
  const toggle = h('button.secondary.small', { type: 'button', 'aria-expanded': 'false' }, 'Instances');
  toggle.addEventListener('click', async () => {
    const open = instances.hidden;
    instances.hidden = !open;
    toggle.setAttribute('aria-expanded', String(open));
    toggle.textContent = open ? 'Hide instances' : 'Instances';
    if (open && !instances.childElementCount) await instanceTable(instances, studyUid, uid);
  });
  const del = settings.allowDelete
    ? h('button.danger.small', {
      type: 'button',
      onclick: async () => {
        const description = text(series, 'SeriesDescription');
        const ok = await confirmDanger('Delete series',
          `Delete ${seriesLabel(series)}${description ? ` “${description}”` : ''} (${plural(count, 'instance')}) of ${patient} from the server?`,
          'Delete series');
        if (!ok) return;
        try {
          await remove(paths.series(studyUid, uid));
          toast(`Deleted ${seriesLabel(series)}.`, 'ok');
          reload();
        } catch (e) { toast(`Could not delete the series: ${e.message}`, 'error'); }
      },
    }, 'Delete')
    : null;
  return h('li.series', { dataset: { series: uid } },
    h('div.series-main', {},
      thumb, placeholder,
      h('div.series-info', {},
        h('div.series-title', {}, h('strong', {}, seriesLabel(series)), ' ', h('span', {}, text(series, 'SeriesDescription'))),
        h('div.muted', {}, [
          plural(count, 'instance'),
          text(series, 'BodyPartExamined'),
          date(text(series, 'SeriesDate')),
        ].filter(Boolean).join(' · ')),
        h('div.uid', {}, uid)),
      h('div.series-actions', {},
        toggle,
        h('a.button.secondary.small', { href: zipUrl(paths.series(studyUid, uid)), download: '' }, 'Download ZIP'),
        del)),
    instances);
}

export async function studyView(studyUid, settings) {
  show(h('p.muted', {}, 'Loading the study…'));
  let study;
  let series;
  try {
    [[study], series] = await Promise.all([
      qido('studies', { StudyInstanceUID: studyUid }),
      qido(`studies/${studyUid}/series`),
    ]);
  } catch (e) {
    show(h('p.error', {}, `Could not load the study: ${e.message}`), h('p', {}, h('a', { href: '#/' }, '‹ Back to the studies')));
    return;
  }
  if (!study) {
    show(h('p.error', {}, 'This study is not on the server (deleted, or never stored).'), h('p', {}, h('a', { href: '#/' }, '‹ Back to the studies')));
    return;
  }
  series.sort((a, b) => Number(text(a, 'SeriesNumber') || 0) - Number(text(b, 'SeriesNumber') || 0));
  const reload = () => studyView(studyUid, settings);
  const name = text(study, 'PatientName') || '(no name)';
  const description = text(study, 'StudyDescription');
  const actions = h('div.toolbar', {},
    settings.viewer
      ? h('a.button.primary', { href: `${settings.viewer}viewer?StudyInstanceUIDs=${studyUid}`, target: '_blank', rel: 'noopener', id: 'open-viewer' }, 'Open in viewer')
      : h('span.muted', { title: settings.viewerReason }, 'Viewer not installed'),
    h('a.button.secondary', { href: zipUrl(paths.study(studyUid)), download: '', id: 'download-study' }, 'Download ZIP'),
    h('span.spacer'),
    settings.allowDelete
      ? h('button.danger', {
        type: 'button',
        id: 'delete-study',
        onclick: async () => {
          const ok = await confirmDanger('Delete study',
            `Delete the study${description ? ` “${description}”` : ''} of ${name}, with its ${series.length} series and ${plural(text(study, 'NumberOfStudyRelatedInstances'), 'instance')}, from the server?`,
            'Delete study');
          if (!ok) return;
          try {
            await remove(paths.study(studyUid));
            toast('The study was deleted.', 'ok');
            location.hash = '#/';
          } catch (e) { toast(`Could not delete the study: ${e.message}`, 'error'); }
        },
      }, 'Delete study')
      : null);
  show(
    h('nav.crumbs', {}, h('a', { href: '#/' }, 'Studies'), ' › ', name),
    h('section.card.study-head', {},
      h('div.title-row', {}, h('h1', {}, name), h('span.badge', {}, values(study, 'ModalitiesInStudy').join(', '))),
      h('p.lead', {}, description || 'No study description'),
      facts([
        ['Patient ID', text(study, 'PatientID')],
        ['Birth date', date(text(study, 'PatientBirthDate'))],
        ['Sex', text(study, 'PatientSex')],
        ['Study date', [date(text(study, 'StudyDate')), time(text(study, 'StudyTime'))].filter(Boolean).join(' ')],
        ['Accession', text(study, 'AccessionNumber')],
        ['Referring physician', text(study, 'ReferringPhysicianName')],
        ['Series / instances', `${series.length} / ${text(study, 'NumberOfStudyRelatedInstances')}`],
      ]),
      h('p.uid-line', {}, h('span', {}, 'Study Instance UID'), h('span.uid', {}, studyUid)),
      actions,
      sendPanel(studyUid, settings)),
    h('section.card', {},
      h('h2', {}, `Series (${series.length})`),
      h('ul.series-list', {}, series.map((x) => seriesRow(studyUid, name, x, settings, reload)))),
  );
  document.title = `webpacs · ${name}`;
}
