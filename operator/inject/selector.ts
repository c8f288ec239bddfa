/**
 * Label selector matching, as Kubernetes' `metav1.LabelSelectorAsSelector` does it: matchLabels and
 * every matchExpression must hold. Pure.
 */
import type { LabelSelector, LabelSelectorRequirement } from '../../crds/schema.js';

export type Labels = Readonly<Record<string, string>>;

function requirementHolds(req: LabelSelectorRequirement, labels: Labels): boolean {
  const has = Object.hasOwn(labels, req.key);
  const value = has ? labels[req.key] : undefined;
  const values = req.values ?? [];
  switch (req.operator) {
    case 'In':
      return value !== undefined && values.includes(value);
    case 'NotIn':
      // Kubernetes: NotIn also holds when the label is absent.
      return value === undefined || !values.includes(value);
    case 'Exists':
      return has;
    case 'DoesNotExist':
      return !has;
    default:
      // An operator the schema does not allow (an object from an older or hand-made source):
      // match nothing rather than everything.
      return false;
  }
}

/**
 * Whether `labels` satisfy `selector`. An absent selector selects nothing; an empty one (`{}`)
 * selects everything, as in Kubernetes. A malformed requirement (In without values, say) selects
 * nothing, because the API server would have refused it and guessing would inject the wrong pods.
 */
export function matchesSelector(
  selector: LabelSelector | undefined | null,
  labels: Labels | undefined,
): boolean {
  if (selector === undefined || selector === null) return false;
  const l: Labels = labels ?? {};
  for (const [key, want] of Object.entries(selector.matchLabels ?? {})) {
    if (!Object.hasOwn(l, key) || l[key] !== want) return false;
  }
  for (const req of selector.matchExpressions ?? []) {
    const needsValues = req.operator === 'In' || req.operator === 'NotIn';
    const count = req.values?.length ?? 0;
    if (needsValues !== count > 0) return false;
    if (!requirementHolds(req, l)) return false;
  }
  return true;
}
