import { defineConfig } from 'tsup';
import { packageBuild } from '../../../tsup.base.ts';

export default defineConfig(packageBuild({ index: 'src/index.ts', 'blob-batch-worker': 'src/blob-batch-worker.ts', 'segment-hash-worker': 'src/segment-hash-worker.ts' }));
