/**
 * `node --import` hook for running a test's TypeScript module tree outside jest (with Node's own
 * type stripping): a relative `./x.js` import, as the sources write it for tsc, resolves to
 * `./x.ts` when only that exists. real-node-janitor.test.ts runs real-node-owner.ts this way.
 */
import { existsSync } from 'node:fs';
import { registerHooks } from 'node:module';
import { fileURLToPath } from 'node:url';

registerHooks({
  resolve(specifier, context, nextResolve) {
    const parent = context.parentURL;
    if (parent?.endsWith('.ts') && /^\.{1,2}\/.*\.js$/.test(specifier)) {
      const ts = new URL(specifier.replace(/\.js$/, '.ts'), parent);
      if (existsSync(fileURLToPath(ts))) return nextResolve(ts.href, context);
    }
    return nextResolve(specifier, context);
  },
});
