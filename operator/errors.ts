/** Named errors of the operator's pure parts. Tests check `name` (and fields), never message text. */

/** Operator settings that cannot work; `field` names the setting. */
export class SettingsError extends Error {
  readonly field: string;
  constructor(field: string, reason: string) {
    super(`invalid operator settings: ${field}: ${reason}`);
    this.name = 'SettingsError';
    this.field = field;
  }
}

/** A JSON patch that does not fit the document it is applied to; `path` is the op's path. */
export class JsonPatchError extends Error {
  readonly path: string;
  constructor(path: string, reason: string) {
    super(`cannot apply JSON patch at ${path}: ${reason}`);
    this.name = 'JsonPatchError';
    this.path = path;
  }
}
