//! The live task board (`web/board/`, served at `/`) in a real headless Chromium, driven by
//! playwright-core from `tests/browser/board.test.mjs` (Node's test runner): two people on one
//! project, live changes, presence, chat, an offline spell, a server restart, axe-core, and
//! screenshots saved to `tests/browser/artifacts/`; then the board degraded to SSE, and its
//! reload after a resume the server cannot honour. `scripts/test.sh` installs Debian's
//! `chromium` and runs `npm ci` there; this test fails, with the reason, when they are missing.

mod chromium;

#[test]
fn the_board_is_live_for_two_people_through_offline_spells_and_restarts() {
    chromium::run("board.test.mjs", &["playwright-core", "axe-core"], &[], 24);
}
