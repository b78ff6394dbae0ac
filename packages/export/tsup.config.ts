import { defineConfig } from 'tsup';
import { packageBuild } from '../../tsup.base.ts';

export default defineConfig(packageBuild({ index: 'src/index.ts', 'rsmf-worker': 'src/rsmf/rsmf-worker.ts' }, { dts: { entry: { index: 'src/index.ts' } } }));
