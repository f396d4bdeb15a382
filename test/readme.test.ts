import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { SETTINGS } from '../pipelines/config.js';
import { commands } from '../pipelines/commands.js';

const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8');

describe('README', () => {
  it('documents every setting with its default', () => {
    for (const setting of SETTINGS) {
      const row = readme.split('\n').find((line) => line.startsWith(`| \`${setting.name}\` |`));
      expect(row, setting.name).toBeDefined();
      if (setting.default !== undefined) expect(row).toContain(`\`${setting.default}\``);
    }
  });

  it('has the two quick-start commands and names every command', () => {
    expect(readme).toContain('npm ci && npm start');
    expect(readme).toContain('npm test ');
    for (const name of Object.keys(commands)) expect(readme, name).toContain(`eddy ${name}`);
  });
});
