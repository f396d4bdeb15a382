import { mkdir, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { PrequentialResult } from '../../models/evaluation/prequential.js';
import { renderHtmlReport, type HtmlReportOptions } from './html.js';

/** Writes the full result as JSON and/or the HTML page, creating directories as needed. */
export async function writeReport(
  result: PrequentialResult,
  paths: { readonly jsonPath?: string | undefined; readonly htmlPath?: string | undefined },
  options: HtmlReportOptions = {},
): Promise<void> {
  const write = async (path: string, text: string) => {
    try {
      await mkdir(dirname(path), { recursive: true });
      await writeFile(path, text);
    } catch (error) {
      throw new Error(`cannot write the report to ${path}: ${(error as Error).message}`, { cause: error });
    }
  };
  if (paths.jsonPath) await write(paths.jsonPath, `${JSON.stringify(result, null, 2)}\n`);
  if (paths.htmlPath) await write(paths.htmlPath, renderHtmlReport(result, options));
}
