// The inquiry widget in a real browser: Debian's chromium driven by
// playwright-core (no browser download). Leadline runs as a real process on one
// port; the host pages are served from other ports (other origins).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createServer } from "node:http";
import { mkdtempSync, mkdirSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const here = dirname(fileURLToPath(import.meta.url));
const repo = join(here, "..", "..");
const bin = process.env.LEADLINE_BIN || join(repo, "target", "debug", "leadline");
const artifacts = join(here, "artifacts");
const ADMIN = "browser-admin-key-0123456789";

let leadline, dataDir, base, hostA, hostB, browser, tenant;

const freePort = () =>
  new Promise((resolve) => {
    const s = createServer();
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });

const api = async (method, path, { key, admin, body } = {}) => {
  const headers = { "content-type": "application/json" };
  if (key) headers.authorization = `Bearer ${key}`;
  if (admin) headers["x-admin-key"] = ADMIN;
  const res = await fetch(`${base}${path}`, { method, headers, body: body ? JSON.stringify(body) : undefined });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null };
};

const leads = async () => (await api("GET", "/v1/leads?limit=200", { key: tenant.sk })).body.data;

// Host pages, each on its own origin: the snippet, a German page, a page with
// hostile CSS, a page with a strict CSP.
const page = (title, head, attrs) => `<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>${title}</title>${head}</head>
<body><h1>${title}</h1><div data-leadline-form></div>
<script src="${base}/widget/v1.js" data-leadline-key="${tenant.pk}" ${attrs} async></script></body></html>`;

const hostServer = (port) =>
  new Promise((resolve) => {
    const s = createServer((req, res) => {
      const url = new URL(req.url, `http://127.0.0.1:${port}`);
      const headers = { "content-type": "text/html; charset=utf-8" };
      let html;
      if (url.pathname === "/de") html = page("Segeltörn", "", 'data-locale="de"');
      else if (url.pathname === "/hostile")
        html = page("Hostile", "<style>body * { display: none !important } input { color: white !important } div { position: absolute; left: -9999px }</style>", "");
      else if (url.pathname === "/csp") {
        headers["content-security-policy"] = `default-src 'none'; script-src ${base}; connect-src ${base}; img-src 'self'`;
        html = page("Strict CSP", "", "");
      } else html = page("Charter inquiry", "", "");
      res.writeHead(200, headers);
      res.end(html);
    });
    s.listen(port, "127.0.0.1", () => resolve(s));
  });

let servers = [];

before(async () => {
  mkdirSync(artifacts, { recursive: true });
  dataDir = mkdtempSync(join(tmpdir(), "leadline-browser-"));
  const port = await freePort();
  base = `http://127.0.0.1:${port}`;
  leadline = spawn(bin, ["serve"], {
    env: {
      PATH: process.env.PATH,
      LEADLINE_DATA_DIR: dataDir,
      LEADLINE_BIND: `127.0.0.1:${port}`,
      LEADLINE_ADMIN_KEY: ADMIN,
      LEADLINE_LOG_FORMAT: "json",
      LEADLINE_RATE_LIMIT_PER_MINUTE: "100000",
    },
    stdio: ["ignore", "ignore", "ignore"],
  });
  for (let i = 0; i < 200; i++) {
    try {
      if ((await fetch(`${base}/healthz`)).ok) break;
    } catch (_) { /* not yet */ }
    await new Promise((r) => setTimeout(r, 50));
  }
  const created = await api("POST", "/admin/tenants", { admin: true, body: { name: "Aegean Widget Charters" } });
  assert.equal(created.status, 201);
  tenant = { id: created.body.tenant.id, sk: created.body.secret_key, pk: created.body.publishable_key };
  const [pa, pb] = [await freePort(), await freePort()];
  hostA = `http://127.0.0.1:${pa}`;
  hostB = `http://127.0.0.1:${pb}`;
  const settings = await api("PATCH", "/v1/settings", {
    key: tenant.sk,
    body: {
      allowed_origins: [hostA],
      widget: { fields: ["phone", "dates", "guests", "destination", "yacht_type", "charter_type", "budget", "message", "marketing"],
        destinations: ["Cyclades", "Ionian", "Dodecanese"], privacy_url: "https://charters.example/privacy" },
    },
  });
  assert.equal(settings.status, 200, JSON.stringify(settings.body));
  servers = [await hostServer(pa), await hostServer(pb)];
  browser = await chromium.launch({ executablePath: process.env.CHROMIUM || "/usr/bin/chromium", args: ["--no-sandbox"] });
});

after(async () => {
  if (browser) await browser.close();
  for (const s of servers) s.close();
  if (leadline) leadline.kill("SIGKILL");
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
});

// Fields inside the shadow root, found by their label (playwright pierces open shadow roots).
const open = async (url, viewport = { width: 1280, height: 900 }) => {
  const context = await browser.newContext({ viewport });
  const p = await context.newPage();
  await p.goto(url);
  await p.getByRole("button").first().waitFor();
  return p;
};

const fill = async (p, email) => {
  await p.getByLabel("Name", { exact: true }).fill("Maria Papadopoulos");
  await p.getByLabel("Email", { exact: true }).fill(email);
  await p.getByLabel("Phone", { exact: true }).fill("+30 694 123 4567");
  const d = new Date(Date.now() + 200 * 86400000).toISOString().slice(0, 10);
  const e = new Date(Date.now() + 207 * 86400000).toISOString().slice(0, 10);
  await p.getByLabel("From", { exact: true }).fill(d);
  await p.getByLabel("To", { exact: true }).fill(e);
  await p.getByLabel("Adults", { exact: true }).fill("4");
  await p.getByLabel("Children", { exact: true }).fill("2");
  await p.getByLabel("Destination", { exact: true }).selectOption("Cyclades");
  await p.getByLabel("Yacht type").selectOption("catamaran");
  await p.getByLabel("Charter type").selectOption("skippered");
  await p.getByLabel("Message").fill("Anniversary trip, quiet anchorages please.");
  await p.getByLabel(/I agree to the/).check();
  // People take a few seconds; the server drops faster submissions as bots'.
  await p.waitForTimeout(3200);
};

test("fill and submit: the lead exists with its utm and locale; screenshots", async () => {
  const p = await open(`${hostA}/?utm_source=newsletter&utm_campaign=spring`);
  await p.screenshot({ path: join(artifacts, "widget-1280.png"), fullPage: true });
  await fill(p, "maria.widget@example.com");
  await p.getByRole("button", { name: "Send inquiry" }).click();
  await p.getByText("Thank you! We received your inquiry").waitFor();
  await p.screenshot({ path: join(artifacts, "widget-1280-success.png"), fullPage: true });
  const found = (await leads()).find((l) => l.email === "maria.widget@example.com");
  assert.ok(found, "the lead is stored");
  assert.equal(found.utm.source, "newsletter");
  assert.equal(found.utm.campaign, "spring");
  assert.equal(found.locale, "en");
  assert.equal(found.destination, "Cyclades");
  assert.deepEqual(found.guests, { adults: 4, children: 2 });
  const small = await open(`${hostA}/`, { width: 390, height: 844 });
  await small.screenshot({ path: join(artifacts, "widget-390.png"), fullPage: true });
  const width = await small.evaluate(() => document.documentElement.scrollWidth);
  assert.ok(width <= 390, `no horizontal scroll at 390 px (${width})`);
  const narrow = await open(`${hostA}/`, { width: 320, height: 700 });
  assert.ok((await narrow.evaluate(() => document.documentElement.scrollWidth)) <= 320, "none at 320 px either");
});

test("invalid email and missing consent: inline errors, focus, nothing stored", async () => {
  const before = (await leads()).length;
  const p = await open(`${hostA}/`);
  await p.getByLabel("Name").fill("Nikos");
  await p.getByLabel("Email").fill("nikos@");
  await p.waitForTimeout(3200);
  await p.getByRole("button", { name: "Send inquiry" }).click();
  await p.getByText("Please enter a valid email address.").waitFor();
  await p.getByText("Please agree to the privacy policy").waitFor();
  assert.equal(await p.getByLabel("Email").getAttribute("aria-invalid"), "true");
  const focused = await p.evaluate(() => document.querySelector("[data-leadline-form]").shadowRoot.activeElement?.type);
  assert.ok(["email", "checkbox"].includes(focused), `focus on a field at fault (${focused})`);
  await p.getByText("Please correct the highlighted fields.").waitFor();
  assert.equal((await leads()).length, before);
});

test("a double click and a dropped first answer make exactly one lead", async () => {
  const p = await open(`${hostA}/`);
  let dropped = false;
  await p.route(`${base}/v1/leads`, async (route) => {
    if (route.request().method() === "POST" && !dropped) {
      dropped = true;
      await route.fetch(); // Leadline stores it ...
      return route.abort("connectionreset"); // ... and the answer is lost
    }
    return route.continue();
  });
  await fill(p, "double.click@example.com");
  const button = p.getByRole("button", { name: "Send inquiry" });
  await button.dblclick();
  await p.getByText("Thank you! We received your inquiry").waitFor({ timeout: 20000 });
  assert.ok(dropped, "the first answer was dropped");
  const mine = (await leads()).filter((l) => l.email === "double.click@example.com");
  assert.equal(mine.length, 1, "one lead");
});

test("the honeypot filled: success shown, nothing stored, counted", async () => {
  const p = await open(`${hostA}/`);
  await fill(p, "honey.bot@example.com");
  await p.evaluate(() => {
    const i = document.querySelector("[data-leadline-form]").shadowRoot.querySelector("input[name=website]");
    i.value = "https://spam.example";
  });
  await p.getByRole("button", { name: "Send inquiry" }).click();
  await p.getByText("Thank you! We received your inquiry").waitFor();
  assert.equal((await leads()).filter((l) => l.email === "honey.bot@example.com").length, 0);
  const metrics = await (await fetch(`${base}/admin/metrics`, { headers: { "x-admin-key": ADMIN } })).text();
  assert.match(metrics, /leadline_leads_rejected_total\{reason="honeypot"\} [1-9]/);
});

test("an origin the company does not allow: a clear error, nothing stored", async () => {
  const context = await browser.newContext();
  const p = await context.newPage();
  await p.goto(`${hostB}/`);
  await p.getByText("This form cannot be sent from this website").waitFor();
  assert.equal((await leads()).filter((l) => l.source === new URL(hostB).host).length, 0);
});

test("data-locale=de: German labels and German errors", async () => {
  const p = await open(`${hostA}/de`);
  await p.getByRole("button", { name: "Anfrage senden" }).waitFor();
  await p.getByLabel("E-Mail").fill("kaputt@");
  await p.waitForTimeout(3200);
  await p.getByRole("button", { name: "Anfrage senden" }).click();
  await p.getByText("Bitte geben Sie eine gültige E-Mail-Adresse ein.").waitFor();
  await p.getByText("Bitte stimmen Sie der Datenschutzerklärung zu").waitFor();
});

test("hostile host CSS and a strict CSP: the form still renders and works", async () => {
  for (const [path, email] of [["/hostile", "hostile.css@example.com"], ["/csp", "strict.csp@example.com"]]) {
    const p = await open(`${hostA}${path}`);
    const box = await p.getByRole("button", { name: "Send inquiry" }).boundingBox();
    assert.ok(box && box.width > 40 && box.height > 20, `${path}: the button is visible`);
    await p.screenshot({ path: join(artifacts, `widget${path.replace("/", "-")}.png`), fullPage: true });
    await fill(p, email);
    await p.getByRole("button", { name: "Send inquiry" }).click();
    await p.getByText("Thank you! We received your inquiry").waitFor();
    assert.equal((await leads()).filter((l) => l.email === email).length, 1, path);
  }
});

test("axe-core inside the shadow root: no serious or critical violation", async () => {
  const p = await open(`${hostA}/`);
  await p.addScriptTag({ path: join(here, "node_modules", "axe-core", "axe.min.js") });
  const results = await p.evaluate(async () => {
    // eslint-disable-next-line no-undef
    const r = await axe.run(document.querySelector("[data-leadline-form]"), { resultTypes: ["violations"] });
    return r.violations.map((v) => ({ id: v.id, impact: v.impact, nodes: v.nodes.length }));
  });
  const bad = results.filter((v) => v.impact === "serious" || v.impact === "critical");
  assert.deepEqual(bad, [], JSON.stringify(results));
  // And after errors are shown.
  await p.waitForTimeout(3200);
  await p.getByRole("button", { name: "Send inquiry" }).click();
  await p.getByText("Please correct the highlighted fields.").waitFor();
  const after = await p.evaluate(async () => {
    const r = await axe.run(document.querySelector("[data-leadline-form]"), { resultTypes: ["violations"] });
    return r.violations.filter((v) => v.impact === "serious" || v.impact === "critical").map((v) => v.id);
  });
  assert.deepEqual(after, []);
});

test("keyboard only: tab to every field and send", async () => {
  const p = await open(`${hostA}/`);
  await p.getByLabel("Name").focus();
  await p.keyboard.type("Keyboard Person");
  await p.keyboard.press("Tab");
  await p.keyboard.type("keyboard.only@example.com");
  // Tab through to the consent checkbox, tick it with Space, and on to the button.
  for (let i = 0; i < 40; i++) {
    await p.keyboard.press("Tab");
    const label = await p.evaluate(() => {
      const a = document.querySelector("[data-leadline-form]").shadowRoot.activeElement;
      return a ? (a.type === "checkbox" ? a.closest("label").textContent : a.tagName) : "";
    });
    if (label.startsWith("I agree")) break;
  }
  await p.keyboard.press("Space");
  for (let i = 0; i < 5; i++) {
    await p.keyboard.press("Tab");
    const tag = await p.evaluate(() => document.querySelector("[data-leadline-form]").shadowRoot.activeElement?.tagName);
    if (tag === "BUTTON") break;
  }
  await p.waitForTimeout(3200);
  await p.keyboard.press("Enter");
  await p.getByText("Thank you! We received your inquiry").waitFor();
  assert.equal((await leads()).filter((l) => l.email === "keyboard.only@example.com").length, 1);
});

test("the script is small and cached", async () => {
  const res = await fetch(`${base}/widget/v1.js`, { headers: { "accept-encoding": "gzip" } });
  assert.equal(res.status, 200);
  assert.match(res.headers.get("cache-control"), /max-age=\d{6,}/);
  const etag = res.headers.get("etag");
  assert.ok(etag);
  const again = await fetch(`${base}/widget/v1.js`, { headers: { "if-none-match": etag } });
  assert.equal(again.status, 304);
  assert.ok(statSync(join(artifacts, "widget-390.png")).size > 1000, "screenshots kept");
});

test("/docs renders the API reference from this origin only", async () => {
  const context = await browser.newContext();
  const p = await context.newPage();
  // The page's CSP allows only Leadline's origin: anything else (Redoc's badge image)
  // is blocked before it is fetched, so no response may come from elsewhere.
  const foreign = [];
  p.on("response", (r) => {
    const u = new URL(r.url());
    if (!["blob:", "data:"].includes(u.protocol) && u.origin !== base) foreign.push(r.url());
  });
  await p.goto(`${base}/docs`);
  await p.getByText("Leads, quotes and bookings for yacht charter companies.").first().waitFor({ timeout: 20000 });
  await p.getByText("/v1/leads").first().waitFor();
  await p.screenshot({ path: join(artifacts, "docs-1280.png") });
  assert.deepEqual(foreign, [], "nothing is loaded from outside Leadline");
});
