// ESLint over the whole repository: the recommended rules of ESLint and
// typescript-eslint (syntax only, no type information, to stay fast) and of
// eslint-plugin-svelte for the renderer. Formatting is prettier's job.
import js from '@eslint/js';
import { defineConfig } from 'eslint/config';
import svelte from 'eslint-plugin-svelte';
import globals from 'globals';
import tseslint from 'typescript-eslint';

export default defineConfig(
  {
    ignores: [
      '**/node_modules/',
      '**/dist/',
      'release/',
      '.vite/',
      'test/artifacts/',
      'test/fixtures/',
      'bench/results/',
      'resources/',
      '.mlw-home/',
      '.devcheck/',
    ],
  },
  js.configs.recommended,
  tseslint.configs.recommended,
  svelte.configs.recommended,
  { languageOptions: { globals: globals.node } },
  { files: ['renderer/**'], languageOptions: { globals: globals.browser } },
  {
    files: ['**/*.svelte', '**/*.svelte.ts'],
    languageOptions: { parserOptions: { parser: tseslint.parser, extraFileExtensions: ['.svelte'] } },
  },
  {
    rules: {
      // As tsc's noUnused*: a key dropped by destructuring (`const { model: _m, ...rest } = o`) or an `_arg` is not unused.
      '@typescript-eslint/no-unused-vars': ['error', { ignoreRestSiblings: true, argsIgnorePattern: '^_' }],
    },
  },
  {
    files: ['**/*.svelte', '**/*.svelte.ts'],
    rules: {
      // The lists that hold state or change item by item are keyed (notices, messages); the rest are option lists and tables redrawn whole.
      'svelte/require-each-key': 'off',
      // It flags Maps and Sets built and read inside one function (lookups), which are never reactive state.
      'svelte/prefer-svelte-reactivity': 'off',
    },
  },
);
