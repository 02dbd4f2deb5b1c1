// Reading DICOM JSON (PS3.18 F.2) for people: values, names, dates, and statuses in words.

export const TAG = {
  PatientName: '00100010', PatientID: '00100020', PatientBirthDate: '00100030', PatientSex: '00100040',
  StudyInstanceUID: '0020000D', StudyDate: '00080020', StudyTime: '00080030', AccessionNumber: '00080050',
  StudyDescription: '00081030', ReferringPhysicianName: '00080090', StudyID: '00200010',
  ModalitiesInStudy: '00080061', NumberOfStudyRelatedSeries: '00201206', NumberOfStudyRelatedInstances: '00201208',
  SeriesInstanceUID: '0020000E', Modality: '00080060', SeriesNumber: '00200011', SeriesDescription: '0008103E',
  SeriesDate: '00080021', BodyPartExamined: '00180015', NumberOfSeriesRelatedInstances: '00201209',
  SOPInstanceUID: '00080018', SOPClassUID: '00080016', InstanceNumber: '00200013', Rows: '00280010',
  Columns: '00280011', NumberOfFrames: '00280008', RetrieveURL: '00081190',
  FailedSOPSequence: '00081198', ReferencedSOPSequence: '00081199', FailureReason: '00081197',
  ErrorComment: '00000902', ReferencedSOPInstanceUID: '00081155',
};

/** The values of attribute ``keyword`` (or a tag) in a DICOM JSON object, as a list. */
export function values(obj, keyword) {
  const attr = obj?.[TAG[keyword] ?? keyword];
  return attr?.Value ?? [];
}

/** The first value as text: person names as "Family, Given", "" when absent. */
export function text(obj, keyword) {
  const first = values(obj, keyword)[0];
  if (first == null) return '';
  if (typeof first === 'object') return personName(first.Alphabetic ?? '');
  return String(first);
}

export function personName(pn) {
  const [family = '', given = '', middle = '', prefix = '', suffix = ''] = pn.split('^');
  const rest = [prefix, given, middle, suffix].filter(Boolean).join(' ');
  return family && rest ? `${family}, ${rest}` : family || rest;
}

/** "20040119" -> "2004-01-19" (other forms as they are). */
export function date(da) {
  return /^\d{8}$/.test(da) ? `${da.slice(0, 4)}-${da.slice(4, 6)}-${da.slice(6, 8)}` : da;
}

/** "072730.123" -> "07:27:30". */
export function time(tm) {
  const m = /^(\d{2})(\d{2})?(\d{2})?/.exec(tm || '');
  return m ? [m[1], m[2] ?? '00', m[3]].filter(Boolean).join(':') : '';
}

export function bytes(n) {
  if (n < 1024) return `${n} B`;
  const units = ['KB', 'MB', 'GB', 'TB'];
  let value = n / 1024;
  let i = 0;
  while (value >= 1024 && i < units.length - 1) { value /= 1024; i += 1; }
  return `${value.toFixed(value < 10 ? 1 : 0)} ${units[i]}`;
}

/**
 * C-STORE / STOW-RS failure reasons in words (PS3.4 B.2.3, PS3.7 C.5; PS3.18 10.5.3 uses the
 * same codes). Codes are matched exactly, then by their family (A7xx, A9xx, Cxxx).
 */
const REASONS = {
  0x0110: 'Processing failure: the server could not store it',
  0x0111: 'Duplicate SOP Instance: an instance with this UID is stored with other content',
  0x0112: 'No such object instance',
  0x0117: 'Invalid object instance',
  0x0119: 'Class-instance conflict',
  0x0122: 'SOP Class not supported',
  0x0124: 'Not authorized',
  0x0211: 'Unrecognized operation',
  0x0213: 'Resource limitation',
  0xA700: 'Out of resources: the server is out of storage or memory',
  0xA900: 'Data set does not match its SOP Class, or an identifier is invalid',
  0xC000: 'Cannot understand: not a readable DICOM file',
  0xC409: 'Study Instance UID mismatch: it belongs to another study',
  0xB000: 'Coercion of data elements',
  0xB006: 'Elements discarded',
  0xB007: 'Data set does not match its SOP Class',
};

export function failureReason(code) {
  if (REASONS[code]) return REASONS[code];
  const hex = code.toString(16).toUpperCase().padStart(4, '0');
  if (hex.startsWith('A7')) return REASONS[0xA700];
  if (hex.startsWith('A9')) return REASONS[0xA900];
  if (hex.startsWith('C')) return 'Cannot understand';
  return 'Failure';
}

export const statusHex = (code) => `0x${code.toString(16).toUpperCase().padStart(4, '0')}`;

/** The text of a ``Warning`` header (``299 host "text"``), unquoted. */
export function warningText(header) {
  const m = /^\s*\d{3}\s+\S+\s+"(.*)"/.exec(header || '');
  return m ? m[1] : header || '';
}
