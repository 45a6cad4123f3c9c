//! The test bed's emulators start on private ports, answer, and are gone after drop.
mod support;

use support::emulators;

#[test]
fn emulators_start_answer_and_stop() {
    for emulator in [
        emulators::start_dynalite(),
        emulators::start_kinesis_local(),
        emulators::start_kinesalite(),
        emulators::start_moto(),
    ] {
        let pid = emulator.pid();
        assert!(emulator.endpoint.starts_with("http://127.0.0.1:"));
        drop(emulator);
        assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists(), "pid {pid} still running");
    }
}
