/**
 * `eddy trainer`: the trainer role (samples -> model versions on the models topic). Settings come from the
 * environment: EDDY_PUBLISH_EVERY_SAMPLES, EDDY_PUBLISH_INTERVAL_MS and the KAFKA_* settings.
 */
export async function main(args: readonly string[]): Promise<number | void> {
  if (args.includes('--help')) {
    console.log(
      'usage: eddy trainer\nLearns from the samples topic and publishes model versions to the models topic; on restart it resumes ' +
        'from the newest published version. Settings: EDDY_PUBLISH_EVERY_SAMPLES, EDDY_PUBLISH_INTERVAL_MS, KAFKA_*.',
    );
    return 0;
  }
  const { roleCommand } = await import('./roles.js');
  return roleCommand('trainer').main(args);
}
