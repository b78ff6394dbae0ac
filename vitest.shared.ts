import { defineProject, type UserWorkspaceConfig } from 'vitest/config';
const conditions = ['@offchannel/source', 'node', 'import', 'default'];
export function packageProject(name: string, test: { readonly globalSetup?: string[]; readonly setupFiles?: string[]; readonly testTimeout?: number; readonly hookTimeout?: number } = {}): UserWorkspaceConfig {
  return defineProject({
    resolve: { conditions },
    ssr: { resolve: { conditions, externalConditions: ['@offchannel/source'] } },
    test: { name, include: ['src/**/*.test.ts'], ...test },
  });
}
