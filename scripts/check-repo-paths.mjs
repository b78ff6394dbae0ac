#!/usr/bin/env node
// Fails when a file under packages/, bench/, examples/ or scripts/ names a path outside the
// repository: a relative path that climbs above the repository root (for instance to the
// `shared` folder that sits beside the repository on the team's machines), a chain of `'..'`
// arguments to path.join/resolve that does the same, or that folder by its absolute path.
// A fresh clone of this repository alone must run every test, bench and script.
//
// Usage: node scripts/check-repo-paths.mjs [repo root]   (exit 0 clean, 1 findings)
import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';

const root = path.resolve(process.argv[2] ?? path.join(import.meta.dirname, '..'));
const TOP = ['packages', 'bench', 'examples', 'scripts'];
const SKIP_DIRS = new Set(['node_modules', 'dist', '.turbo', 'coverage']);
const TEXT = /\.(?:[cm]?[jt]sx?|json|sh|bash|ya?ml|md|sql|py|toml|cfg|conf|txt|html|css)$/;

/** A relative path literal: two or more characters, starting with `../` or `..\`. */
const RELATIVE = /(?<![\w.])((?:\.\.[/\\])+[\w@.+\-/\\]*)/g;
/** path.join / path.resolve style: a run of `'..'` arguments. */
const DOTDOT_ARGS = /(?:join|resolve)\(([^)]*)\)/g;
/** The folder beside the repository, named by its absolute path on the team's machines. */
const SHARED = /\/work\/shared\b/;

const HOSTILE_MARKER = 'repo-paths: hostile input, never read';

const findings = [];

function walk(dir) {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    if (entry.isSymbolicLink()) continue;
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) {
      if (!SKIP_DIRS.has(entry.name)) walk(full);
    } else if (entry.isFile() && TEXT.test(entry.name) && statSync(full).size < 2 * 1024 * 1024) {
      check(full);
    }
  }
}

function escapes(fromDir, relative) {
  const target = path.resolve(fromDir, relative.replaceAll('\\', '/'));
  return target !== root && !target.startsWith(root + path.sep);
}

function check(file) {
  const dir = path.dirname(file);
  const lines = readFileSync(file, 'utf8').split('\n');
  lines.forEach((line, i) => {
    // A test's hostile input (a crafted attachment name) is not a path anything reads; such a
    // line says so with this marker, which a reviewer can grep for.
    if (line.includes(HOSTILE_MARKER)) return;
    const where = `${path.relative(root, file)}:${i + 1}`;
    if (SHARED.test(line)) findings.push(`${where}: names the shared folder beside the repository by its absolute path`);
    for (const m of line.matchAll(RELATIVE)) {
      if (escapes(dir, m[1])) findings.push(`${where}: ${m[1]} climbs above the repository root`);
    }
    for (const m of line.matchAll(DOTDOT_ARGS)) {
      const ups = m[1].split(',').map((s) => s.trim()).filter((s) => s === "'..'" || s === '".."').length;
      if (ups > 0 && escapes(dir, '../'.repeat(ups))) {
        findings.push(`${where}: ${ups} '..' segments climb above the repository root`);
      }
    }
  });
}

for (const top of TOP) {
  try {
    if (statSync(path.join(root, top)).isDirectory()) walk(path.join(root, top));
  } catch {
    // a top-level folder that does not exist has nothing to check
  }
}

if (findings.length > 0) {
  console.error('These files reach outside the repository; a fresh clone must need nothing beside it.');
  console.error('Copy what they need into the repository (with its licence) and point them there:');
  for (const f of [...new Set(findings)]) console.error(`  ${f}`);
  process.exit(1);
}
console.log(`no path outside the repository in ${TOP.join('/, ')}/`);
