/** Stamped on every record as `source`. Keep in step with package.json (checked by a test). */
export const PACKAGE_NAME = '@offchannel/telegram';
export const PACKAGE_VERSION = '0.1.0';
/** The platform libraries that produce the TL objects and Bot API updates we map. */
export const UPSTREAM = '@mtcute/core@0.30.3';
export const BUSINESS_UPSTREAM = 'grammy@1.46.0';
