/** This package's version (kept equal to package.json by a test) and the Baileys it is built on. */
export const PACKAGE_VERSION = '0.1.0';
export const UPSTREAM = '@whiskeysockets/baileys@7.0.0-rc14';
