//! A real headless browser for the web view's test: Debian's `chromium` driven through
//! `chromedriver` by Selenium (Python, installed with pip when missing). One page stays open
//! for the whole test, so what it shows later proves the live updates (no reload).
//!
//! The driver script reads one command per line and answers `ok` or `fail <why>`:
//! `wait <seconds> <css selector> <text>` waits until an element matching the selector
//! contains the text; `gone <seconds> <css selector> <text>` until none does; `shot <path>`
//! saves a screenshot; `quit`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test helper: failures should be loud

use std::path::Path;
use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

const DRIVER: &str = r#"
import sys, time
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
opts = webdriver.ChromeOptions()
opts.binary_location = "/usr/bin/chromium"
for a in ["--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,900",
          "--disable-dev-shm-usage"]:
    opts.add_argument(a)
driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
driver.get(sys.argv[1])
print("ok", flush=True)
from selenium.common.exceptions import StaleElementReferenceException
def texts(sel):
    # The page redraws its tables on every update: an element found may be gone when read.
    try:
        return [e.text for e in driver.find_elements(By.CSS_SELECTOR, sel)]
    except StaleElementReferenceException:
        return []
for line in sys.stdin:
    parts = line.rstrip("\n").split(" ", 3)
    cmd = parts[0]
    if cmd == "quit":
        break
    if cmd == "shot":
        driver.save_screenshot(line.rstrip("\n").split(" ", 1)[1])
        print("ok", flush=True)
        continue
    limit, sel, text = float(parts[1]), parts[2], parts[3]
    want = cmd == "wait"
    end = time.time() + limit
    while True:
        found = any(text in t for t in texts(sel))
        if found == want:
            print("ok", flush=True)
            break
        if time.time() > end:
            body = driver.find_element(By.TAG_NAME, "body").text.replace("\n", " | ")
            print("fail " + body, flush=True)
            break
        time.sleep(0.2)
driver.quit()
"#;

/// One open page in headless chromium.
#[derive(Debug)]
pub struct Browser {
    child: Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
}

impl Browser {
    /// Opens `url` (panics with the reason when chromium, chromedriver or selenium is missing).
    pub async fn open(url: &str) -> Browser {
        for bin in ["/usr/bin/chromium", "/usr/bin/chromedriver"] {
            assert!(
                Path::new(bin).exists(),
                "{bin} is missing: install Debian's chromium and chromium-driver (./scripts/test does)"
            );
        }
        crate::python::ensure_module("selenium", "selenium").expect("selenium");
        let mut child = Command::new("python3")
            .args(["-c", DRIVER, url])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("python3");
        let stdin = child.stdin.take().unwrap();
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut b = Browser {
            child,
            stdin,
            lines,
        };
        b.answer("open").await;
        b
    }

    async fn answer(&mut self, what: &str) {
        let line = self.lines.next_line().await.unwrap().unwrap_or_default();
        assert_eq!(line, "ok", "{what}: {line}");
    }

    async fn command(&mut self, line: &str) {
        self.stdin
            .write_all(format!("{line}\n").as_bytes())
            .await
            .unwrap();
        self.stdin.flush().await.unwrap();
        self.answer(line).await;
    }

    /// Waits until an element matching `selector` shows `text` (panics with the page's text).
    pub async fn wait_for(&mut self, seconds: u64, selector: &str, text: &str) {
        self.command(&format!("wait {seconds} {selector} {text}"))
            .await;
    }

    /// Saves a screenshot (PNG).
    pub async fn screenshot(&mut self, path: &Path) {
        self.command(&format!("shot {}", path.display())).await;
    }

    /// Closes the browser.
    pub async fn quit(mut self) {
        let _ = self.stdin.write_all(b"quit\n").await;
        let _ = self.child.wait().await;
    }
}
