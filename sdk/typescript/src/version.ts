export const SDK_NAME = "@tracefoundry/sdk";
export const SDK_VERSION = "0.1.0";
