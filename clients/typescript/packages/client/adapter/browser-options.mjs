// How the browser adapters start Debian's chromium: headless, no sandbox (CI runs as root), and
// web security off so the page may call the runner's server on another port without CORS.

/** playwright-core launch options for the conformance browser. */
export function launchOptions() {
  return {
    executablePath: process.env.FERRY_CHROMIUM ?? "/usr/bin/chromium",
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-web-security"],
  };
}
