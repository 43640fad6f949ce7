//! The report pages in a real browser: two real agents fed by the official `datadog` client
//! (two versions of a model, with inputs), an aggregator with a tokens file, and headless
//! Chromium driven over WebDriver (Debian `chromium` and `chromium-driver`; a small W3C
//! WebDriver client below). The test signs in through the login form, opens every page, and
//! checks the rendered DOM against the JSON API: the latency chart has a line per version and
//! quantile whose every point is the API's quantile over that step, the step counts add up to
//! everything sent, the tables carry the API's figures, and the drift overlay draws both
//! versions. Screenshots (desktop light, desktop dark, phone) go to
//! `target/pitot-screenshots/`.

// Helpers below sit outside `#[test]` functions; a failed setup step should panic like an assertion.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use base64::Engine as _;
use common::{Fleet, Proc, latencies, new_token, python_send, values_file, wait_for};
use serde_json::{Value, json};

const CONFIG: &str = r##"
[[model]]
name = "llama3"
owner = "team-chat"
contact = "#chat-oncall"

[[slo]]
name = "chat-latency"
objective = 0.99
window = "7d"
[slo.sli]
kind = "latency"
metric = "request.latency"
threshold_ms = 100
tags = ["model:llama3"]

[[gate]]
name = "llama3-canary"
model = "llama3"
baseline = ["version:v1"]
candidate = ["version:v2"]
"##;

/// A W3C WebDriver session on a chromedriver this test started.
struct Browser {
    base: String,
    session: String,
    _driver: Proc,
}

impl Browser {
    fn start(dir: &Path) -> Browser {
        let chromium = common::tools::debian_tool("chromium", "chromium");
        let driver = common::tools::debian_tool("chromedriver", "chromium-driver");
        let port = common::free_tcp_port();
        let log = dir.join("chromedriver.log");
        let file = std::fs::File::create(&log).unwrap();
        let child = Command::new(driver)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .expect("chromedriver starts");
        let proc = Proc { child, log };
        let base = format!("http://127.0.0.1:{port}");
        wait_for("chromedriver /status", Duration::from_secs(30), || {
            let mut r = ureq::get(&format!("{base}/status")).call().ok()?;
            let v: Value = r.body_mut().read_json().ok()?;
            (v["value"]["ready"] == true).then_some(())
        });
        let profile = dir.join("chromium-profile");
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1280,1700",
                         format!("--user-data-dir={}", profile.display())]
            }
        }}});
        let v = post(&format!("{base}/session"), &caps);
        let session = v["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session: {v}"))
            .to_owned();
        Browser {
            base,
            session,
            _driver: proc,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}/session/{}{path}", self.base, self.session)
    }

    fn goto(&self, url: &str) {
        post(&self.url("/url"), &json!({ "url": url }));
    }

    /// Runs `script` (a function body) in the page and returns its value.
    fn js(&self, script: &str) -> Value {
        post(
            &self.url("/execute/sync"),
            &json!({ "script": script, "args": [] }),
        )["value"]
            .clone()
    }

    fn element(&self, css: &str) -> String {
        let v = post(
            &self.url("/element"),
            &json!({ "using": "css selector", "value": css }),
        );
        v["value"]
            .as_object()
            .and_then(|o| o.values().next())
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("no element {css}: {v}"))
            .to_owned()
    }

    fn type_into(&self, css: &str, text: &str) {
        let e = self.element(css);
        post(
            &self.url(&format!("/element/{e}/value")),
            &json!({ "text": text }),
        );
    }

    fn click(&self, css: &str) {
        let e = self.element(css);
        post(&self.url(&format!("/element/{e}/click")), &json!({}));
    }

    fn window(&self, width: u32, height: u32) {
        post(
            &self.url("/window/rect"),
            &json!({ "width": width, "height": height }),
        );
    }

    fn dark(&self, on: bool) {
        post(
            &self.url("/goog/cdp/execute"),
            &json!({"cmd": "Emulation.setEmulatedMedia", "params": {"features": [
                {"name": "prefers-color-scheme", "value": if on { "dark" } else { "light" }}
            ]}}),
        );
    }

    fn screenshot(&self, path: &Path) {
        let mut r = ureq::get(&self.url("/screenshot")).call().unwrap();
        let v: Value = r.body_mut().read_json().unwrap();
        let png = base64::engine::general_purpose::STANDARD
            .decode(v["value"].as_str().unwrap())
            .unwrap();
        assert!(png.starts_with(b"\x89PNG"), "a PNG");
        std::fs::write(path, png).unwrap();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _gone = ureq::delete(&format!("{}/session/{}", self.base, self.session)).call();
    }
}

fn post(url: &str, body: &Value) -> Value {
    let mut r = ureq::post(url)
        .config()
        .http_status_as_error(false)
        .build()
        .send_json(body)
        .unwrap_or_else(|e| panic!("WebDriver {url}: {e}"));
    let status = r.status();
    let v: Value = r.body_mut().read_json().unwrap();
    assert!(status.is_success(), "WebDriver {url}: {status} {v}");
    v
}

fn screenshots() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.ancestors().nth(3).unwrap().join("pitot-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Equal but for the last bits (histograms merged in another order round differently).
fn same(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-12 * a.abs().max(b.abs())
}

fn f(v: &Value) -> f64 {
    match v {
        Value::String(s) => s.parse().unwrap_or_else(|_| panic!("a number: {s}")),
        other => other
            .as_f64()
            .unwrap_or_else(|| panic!("a number: {other}")),
    }
}

#[test]
fn report_pages_render_the_api_figures_in_a_real_browser() {
    let (token, line) = new_token("browser", "read");
    let mut fleet = Fleet::new(&["gpu-a", "gpu-b"]);
    let tokens = fleet.path("tokens");
    std::fs::write(&tokens, format!("{line}\n")).unwrap();
    fleet.http_extra = format!("tokens_file = \"{}\"", tokens.display());
    fleet.token = Some(token.clone());
    fleet.aggregator_extra = CONFIG.to_owned();
    fleet.start_aggregator();
    fleet.start_agent("gpu-a");
    fleet.start_agent("gpu-b");

    // Latencies through the official client (ms timers), inputs as raw DogStatsD histograms.
    let dir = fleet.dir.path().to_path_buf();
    let sent = [("gpu-a", "v1", 21, 30.0), ("gpu-b", "v2", 22, 70.0)];
    for (agent, version, seed, median) in sent {
        let values = values_file(
            &dir,
            &format!("{version}.txt"),
            &latencies(seed, 2000, median),
        );
        python_send(&[
            "--client",
            "datadog",
            "--udp",
            &fleet.udp_addr(agent).to_string(),
            "--metric",
            "request.latency",
            "--kind",
            "timing",
            "--tags",
            &format!("model:llama3,version:{version}"),
            "--values",
            values.to_str().unwrap(),
            "--rate",
            "20000",
        ]);
    }
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    for (agent, version, base) in [("gpu-a", "v1", 180.0), ("gpu-b", "v2", 300.0)] {
        let lines: Vec<String> = (0..600)
            .map(|i| {
                let v = base + f64::from((i * 7919) % 200);
                format!("input.prompt_tokens:{v}|h|#model:llama3,version:{version}")
            })
            .collect();
        for chunk in lines.chunks(20) {
            udp.send_to(chunk.join("\n").as_bytes(), fleet.udp_addr(agent))
                .unwrap();
        }
    }
    fleet.wait_for_count("request.latency", 4000, Duration::from_secs(60));
    fleet.wait_for_count("input.prompt_tokens", 1200, Duration::from_secs(60));

    // Without a token: the login form, not JSON; a wrong token is refused in the form.
    let (status, body) = fleet_raw(&fleet, "/", None);
    assert_eq!(status, 401);
    assert!(
        body.contains("name=\"token\"") && body.contains("<form"),
        "{body}"
    );
    let (status, body) = fleet_raw(&fleet, "/agents", Some("pitot_token=nope"));
    assert_eq!(status, 401);
    assert!(body.contains("not in the aggregator"), "{body}");

    let shots = screenshots();
    let browser = Browser::start(fleet.dir.path());
    let url = fleet.url();
    browser.goto(&format!("{url}/models/llama3?range=1h"));
    assert_eq!(
        browser.js("return document.title"),
        "Sign in · Pitot",
        "a page without a token asks for one"
    );
    browser.type_into("input[name=token]", &token);
    browser.click("button[type=submit]");
    wait_for(
        "the model page after signing in",
        Duration::from_secs(20),
        || (browser.js("return document.title") == "Model llama3 · Pitot").then_some(()),
    );

    // The model page: owner, a band and two lines per version, each point the API's.
    assert_eq!(
        browser.js("return document.getElementById('owner').textContent"),
        "team-chat"
    );
    let chart = browser.js(
        "const g = [...document.querySelectorAll('#latency g.series')];\
         return {step: +document.getElementById('latency-chart').dataset.step,\
         series: +document.getElementById('latency').dataset.series,\
         lines: g.map(s => ({name: s.dataset.name, n: +s.dataset.points,\
           points: [...s.querySelectorAll('circle')].map(c => [c.dataset.t, c.dataset.v])}))}",
    );
    let step = chart["step"].as_i64().unwrap();
    assert!(step > 0 && step % 1000 == 0, "{chart}");
    assert_eq!(chart["series"], 4, "p50 and p99 per version: {chart}");
    let names: Vec<&str> = chart["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "version=v1 p50",
            "version=v1 p99",
            "version=v2 p50",
            "version=v2 p99"
        ]
    );
    let client = fleet.client();
    for line in chart["lines"].as_array().unwrap() {
        let name = line["name"].as_str().unwrap();
        let version = &name[8..10];
        let q = if name.ends_with("p50") { "0.5" } else { "0.99" };
        let points = line["points"].as_array().unwrap();
        assert_eq!(points.len() as u64, line["n"].as_u64().unwrap());
        assert!(!points.is_empty(), "{name} has points");
        let mut counted = 0;
        for p in points {
            let t: i64 = p[0].as_str().unwrap().parse().unwrap();
            let v: f64 = f(&p[1]);
            let api = client
                .get(
                    "/api/v1/quantiles",
                    &[
                        ("metric", "request.latency".to_owned()),
                        ("q", q.to_owned()),
                        ("tag", "model:llama3".to_owned()),
                        ("tag", format!("version:{version}")),
                        ("from", (t / 1000).to_string()),
                        ("to", ((t + step) / 1000).to_string()),
                    ],
                )
                .unwrap();
            let want = api["fleet"]["quantiles"][q].as_f64().unwrap();
            assert!(
                same(v, want),
                "{name} at {t}: the page's point {v} is the API's quantile over its step, {want}"
            );
            counted += api["fleet"]["count"].as_u64().unwrap();
        }
        assert_eq!(
            counted, 2000,
            "{name}: the steps drawn hold every value sent"
        );
    }
    let versions = browser.js(
        "return [...document.querySelectorAll('#versions tr[data-version]')].map(r =>\
         [r.dataset.version, r.cells[1].textContent, r.cells[2].dataset.v, r.cells[3].dataset.v])",
    );
    let api = client
        .get(
            "/api/v1/quantiles",
            &[
                ("metric", "request.latency".to_owned()),
                ("q", "0.5,0.99".to_owned()),
                ("tag", "model:llama3".to_owned()),
                ("group_by", "version".to_owned()),
            ],
        )
        .unwrap();
    let rows = versions.as_array().unwrap();
    assert_eq!(rows.len(), 2, "{versions}");
    for (row, group) in rows.iter().zip(api["groups"].as_array().unwrap()) {
        assert_eq!(row[0], group["tags"]["version"]);
        assert_eq!(row[1], group["count"].to_string());
        assert!(same(
            f(&row[2]),
            group["quantiles"]["0.5"].as_f64().unwrap()
        ));
        assert!(same(
            f(&row[3]),
            group["quantiles"]["0.99"].as_f64().unwrap()
        ));
    }
    // The gate's decision now, as the gate endpoint gives it (v2 is slower: not a pass).
    let gate = browser.js(
        "const r = document.querySelector('#gates tr[data-gate=\"llama3-canary\"]');\
         return r && [r.cells[1].textContent, r.cells[2].textContent]",
    );
    let api = client.get("/api/v1/gate/llama3-canary", &[]).unwrap();
    assert_eq!(gate[0], "version:v2 against version:v1", "{gate}");
    assert_eq!(gate[1], api["decision"], "{gate} vs {api}");
    assert_ne!(gate[1], "pass", "{api}");
    browser.screenshot(&shots.join("model-light.png"));
    browser.dark(true);
    browser.screenshot(&shots.join("model-dark.png"));
    assert_eq!(
        browser.js("return matchMedia('(prefers-color-scheme: dark)').matches"),
        true
    );
    let bg = browser.js("return getComputedStyle(document.body).backgroundColor");
    assert_eq!(bg, "rgb(13, 17, 23)", "the dark palette applies");
    browser.dark(false);

    // One line per host on demand: one p99 line per (version, host) more.
    browser.goto(&format!("{url}/models/llama3?range=1h&hosts=1"));
    let lines = browser.js("return +document.getElementById('latency').dataset.series");
    assert_eq!(lines, 6, "two host lines added");

    // The fleet page: the models table and the SLO.
    browser.goto(&format!("{url}/?range=24h"));
    let row = browser.js(
        "const r = document.querySelector('#models tr[data-model=llama3]');\
         return r && [...r.cells].map(c => c.textContent)",
    );
    assert_eq!(row[0], "llama3", "{row}");
    assert_eq!(row[1], "team-chat", "{row}");
    assert!(row[2].as_str().unwrap().contains("v1 (1)"), "{row}");
    let slo_row = browser
        .js("const r = document.querySelector('#slos tr:nth-child(2)'); return r && r.textContent");
    assert!(
        slo_row.as_str().unwrap().contains("chat-latency"),
        "{slo_row}"
    );
    browser.window(390, 844);
    browser.screenshot(&shots.join("fleet-phone.png"));
    let overflow = browser.js("return document.documentElement.scrollWidth <= innerWidth + 1");
    assert_eq!(overflow, true, "no sideways scrolling on a phone");
    browser.window(1280, 1700);
    browser.screenshot(&shots.join("fleet.png"));

    // The SLO page: burn rates and budget as the API has them; the burn-down ends at now.
    browser.goto(&format!("{url}/slo/chat-latency"));
    let page = browser.js(
        "return {rates: [...document.querySelectorAll('#burn-rates tr[data-lookback]')]\
           .map(r => [r.dataset.lookback, r.cells[1].dataset.v]),\
         series: +document.getElementById('burn-down').dataset.series,\
         last: [...document.querySelectorAll('#burn-down circle')].map(c => c.dataset.v).pop(),\
         alert: document.getElementById('alert').textContent}",
    );
    let api = client.get("/api/v1/slo/chat-latency", &[]).unwrap();
    let rates = page["rates"].as_array().unwrap();
    assert_eq!(rates.len(), api["burn_rates"].as_object().unwrap().len());
    for r in rates {
        let lookback = r[0].as_str().unwrap();
        assert_eq!(
            f(&r[1]),
            api["burn_rates"][lookback].as_f64().unwrap(),
            "{lookback}"
        );
    }
    assert_eq!(page["series"], 1);
    let remaining = api["error_budget"]["remaining"].as_f64().unwrap() * 100.0;
    assert!(
        (f(&page["last"]) - remaining).abs() < 1e-9,
        "{page} vs {remaining}"
    );
    assert_eq!(page["alert"], api["alert"]);
    browser.screenshot(&shots.join("slo.png"));

    // The drift page, v2 against v1: the API's figures and both distributions drawn.
    browser.goto(&format!("{url}/drift?range=1h&model=llama3&a=v1&b=v2"));
    let drift = browser.js(
        "const r = document.querySelector('#drift tr[data-input=\"input.prompt_tokens\"]');\
         return {status: r.cells[2].textContent,\
           figures: Object.fromEntries([...r.querySelectorAll('[data-figure]')]\
             .map(s => [s.dataset.figure, s.dataset.v])),\
           overlay: [...document.querySelectorAll('#overlay-0 g.series')]\
             .map(g => [g.dataset.name, +g.dataset.points])}",
    );
    let api = client
        .get(
            "/api/v1/drift",
            &[
                ("mode", "versions".to_owned()),
                ("a", "v1".to_owned()),
                ("b", "v2".to_owned()),
                ("tag", "model:llama3".to_owned()),
            ],
        )
        .unwrap();
    let result = &api["results"][0];
    assert_eq!(result["metric"], "input.prompt_tokens");
    assert_eq!(drift["status"], result["status"], "{drift}");
    assert_eq!(drift["status"], "drift", "v2's inputs moved: {result}");
    // Figures are flattened into the API's row; the page shows each with its value.
    let shown = drift["figures"].as_object().unwrap();
    for k in [
        "ks",
        "psi",
        "ks_p_value",
        "wasserstein_norm",
        "current_count",
    ] {
        // (Compared as numbers: serde_json's parser may round a 17-digit figure's last bit.)
        assert!(same(f(&shown[k]), f(&result[k])), "figure {k}: {drift}");
    }
    assert_eq!(
        drift["overlay"],
        json!([["reference", 40], ["current", 40]])
    );
    browser.screenshot(&shots.join("drift.png"));

    // Agents: both, with the API's link state.
    browser.goto(&format!("{url}/agents"));
    let agents = browser.js(
        "return [...document.querySelectorAll('#agents tr[data-agent]')].map(r => [r.dataset.agent, r.cells[2].textContent])",
    );
    let api = client.get("/api/v1/agents", &[]).unwrap();
    let ids: Vec<&str> = agents
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a[0].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["gpu-a", "gpu-b"]);
    for (row, a) in agents
        .as_array()
        .unwrap()
        .iter()
        .zip(api["agents"].as_array().unwrap())
    {
        assert_eq!(row[0], a["id"]);
        assert!(
            row[1]
                .as_str()
                .unwrap()
                .starts_with(a["connection"]["state"].as_str().unwrap()),
            "{row} vs {a}"
        );
    }
    eprintln!("screenshots in {}", shots.display());
}

/// An HTTP GET on the aggregator with an optional cookie and no token.
fn fleet_raw(fleet: &Fleet, path: &str, cookie: Option<&str>) -> (u16, String) {
    let mut req = ureq::get(&format!("{}{path}", fleet.url()))
        .config()
        .http_status_as_error(false)
        .build();
    if let Some(c) = cookie {
        req = req.header("Cookie", c);
    }
    let mut r = req.call().unwrap();
    (r.status().as_u16(), r.body_mut().read_to_string().unwrap())
}
