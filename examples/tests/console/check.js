// The web console of `kvs local` in headless Chromium (Debian's chromium,
// driven by playwright-core): the stream put beforehand is listed, its
// video plays (currentTime advances, videoWidth is the stream's), the
// timeline shows its fragments, thumbnails come, and a screenshot is saved.
//
// Usage: node check.js URL STREAM WIDTH FRAGMENTS SCREENSHOT.png
// URL may carry `?player=mse` (the Media Source Extensions player even
// where HLS plays natively). Prints one JSON line with what it saw; exits
// non-zero on a failed check.
"use strict";
const { chromium } = require("playwright-core");

const [url, stream, width, fragments, shot] = process.argv.slice(2);

async function main() {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--no-sandbox", "--autoplay-policy=no-user-gesture-required", "--disable-gpu"],
  });
  const seen = {};
  try {
    const page = await browser.newPage({ viewport: { width: 1280, height: 860 } });
    const errors = [];
    page.on("pageerror", (e) => errors.push(String(e)));
    await page.goto(url, { waitUntil: "load" });
    // The stream is listed, then picked.
    const row = page.locator(`tr.stream[data-stream="${stream}"]`);
    await row.waitFor({ timeout: 15000 });
    seen.listed = true;
    seen.row = await row.innerText();
    await row.click();
    // The timeline shows every fragment.
    await page.waitForFunction(
      (n) => document.getElementById("timeline").dataset.fragments === n,
      fragments,
      { timeout: 15000 },
    );
    seen.fragments = Number(await page.getAttribute("#timeline", "data-fragments"));
    seen.bars = await page.locator("#timeline .fragment").count();
    // The video plays: time advances, the picture has the stream's width.
    await page.waitForFunction(() => {
      const v = document.getElementById("player");
      return v.videoWidth > 0 && v.currentTime > 0.5;
    }, null, { timeout: 30000 });
    const t1 = await page.evaluate(() => document.getElementById("player").currentTime);
    await page.waitForTimeout(1500);
    const v = await page.evaluate(() => {
      const p = document.getElementById("player");
      return { time: p.currentTime, width: p.videoWidth, height: p.videoHeight, mode: p.dataset.mode };
    });
    seen.advanced = v.time > t1;
    seen.video_width = v.width;
    seen.video_height = v.height;
    seen.mode = v.mode;
    // Thumbnails from GetImages, and the ACKs.
    await page.waitForFunction(() => document.querySelectorAll("#thumbs img").length > 0, null, { timeout: 15000 });
    seen.thumbnails = await page.locator("#thumbs img").count();
    seen.acks = await page.locator("#acks tr").count();
    await page.screenshot({ path: shot, fullPage: true });
    seen.errors = errors;
  } finally {
    await browser.close();
  }
  console.log(JSON.stringify(seen));
  const ok = seen.listed && seen.fragments === Number(fragments) && seen.bars === Number(fragments) &&
    seen.advanced && seen.video_width === Number(width) && seen.thumbnails > 0 && seen.errors.length === 0;
  process.exit(ok ? 0 : 1);
}

main().catch((e) => {
  console.error(String(e && e.stack || e));
  process.exit(2);
});
