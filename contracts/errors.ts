/** The one error of the contracts: a value that is not what the contract allows. */

/** `field` names where the value is wrong (a JSON path such as `forwards[0].providers[1].path`). */
export class ContractError extends Error {
  readonly field: string;
  constructor(field: string, reason: string) {
    super(`${field}: ${reason}`);
    this.name = 'ContractError';
    this.field = field;
  }
}
