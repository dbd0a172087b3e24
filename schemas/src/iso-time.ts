/** ISO 8601: a date, optionally a time (`T` or a space) to the second or a fraction, optionally `Z` or an offset. */
const ISO_DATE_TIME =
  /^(\d{4})-(\d{2})-(\d{2})(?:[Tt ](\d{2}):(\d{2})(?::(\d{2})(?:\.\d{1,9})?)?(?:[Zz]|[+-](?:[01]\d|2[0-3]):?[0-5]\d)?)?$/;

/**
 * An ISO 8601 date-time (`2026-12-01T09:00:00Z`; a date alone is its midnight UTC, a time without a zone local),
 * or undefined for anything else. `new Date()` alone also reads legacy forms: `12` as 2001-12-01, `-1` as 2001-01-01.
 */
export function parseIsoTime(value: string): Date | undefined {
  const m = ISO_DATE_TIME.exec(value.trim());
  if (!m) return undefined;
  const [year, month, day, hour, minute, second] = m.slice(1, 7).map((p) => Number(p ?? 0)) as [
    number,
    number,
    number,
    number,
    number,
    number,
  ];
  const daysInMonth = new Date(Date.UTC(year, month, 0)).getUTCDate();
  if (month < 1 || month > 12 || day < 1 || day > daysInMonth || hour > 23 || minute > 59 || second > 59) {
    return undefined; // `new Date` would roll 2026-02-31 over to March 3rd
  }
  const time = new Date(value.trim());
  return Number.isNaN(time.getTime()) ? undefined : time;
}
