/**
 * Per-worker setup: points the AWS SDK's standard credential chain at the test cluster's
 * credentials file (profile `offchannel-test`), never at the developer's own AWS setup.
 */
import { inject } from 'vitest';

const server = inject('s3');
if (server.credentialsFile) {
  process.env.AWS_SHARED_CREDENTIALS_FILE = server.credentialsFile;
  process.env.AWS_CONFIG_FILE = `${server.credentialsFile}.config-none`;
  process.env.AWS_PROFILE = 'offchannel-test';
  delete process.env.AWS_ACCESS_KEY_ID;
  delete process.env.AWS_SECRET_ACCESS_KEY;
  delete process.env.AWS_SESSION_TOKEN;
}
process.env.AWS_REGION ??= 'us-east-1';
