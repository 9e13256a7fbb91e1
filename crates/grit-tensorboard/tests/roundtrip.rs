//! Writes event files with `EventWriter` and reads them back with this crate's CRC-checking
//! reader and prost.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use grit_tensorboard::proto::summary::{Value, value};
use grit_tensorboard::proto::{DataClass, DataType, Event, TensorProto, event};
use grit_tensorboard::record::{encode_record, read_records};
use grit_tensorboard::{EventWriter, FILE_VERSION, TensorBoardError, read_events};
use prost::Message;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Returns the only file in `dir`, failing if there are none or several.
fn only_file(dir: &Path) -> PathBuf {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    assert_eq!(
        files.len(),
        1,
        "expected one file in {}: {files:?}",
        dir.display()
    );
    files.pop().unwrap()
}

fn now_seconds() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// Returns the single summary value of `event`, failing for any other payload.
fn single_value(event: &Event) -> &Value {
    let Some(event::What::Summary(summary)) = &event.what else {
        panic!("expected a summary event, got {:?}", event.what);
    };
    assert_eq!(summary.value.len(), 1);
    &summary.value[0]
}

fn tensor(value: &Value) -> &TensorProto {
    let Some(value::Value::Tensor(tensor)) = &value.value else {
        panic!("expected a tensor value for tag {}", value.tag);
    };
    tensor
}

fn plugin_name(value: &Value) -> &str {
    &value
        .metadata
        .as_ref()
        .expect("metadata on every point")
        .plugin_data
        .as_ref()
        .expect("plugin_data in metadata")
        .plugin_name
}

fn shape(tensor: &TensorProto) -> Vec<i64> {
    let shape = tensor.tensor_shape.as_ref().expect("tensor_shape present");
    shape.dim.iter().map(|dim| dim.size).collect()
}

#[test]
fn framed_record_matches_reference_bytes() {
    let event = Event {
        wall_time: 1.5,
        step: 3,
        what: Some(event::What::FileVersion("brain.Event:2".to_owned())),
    };
    // Payload, 26 bytes (0x1a):
    //   09 000000000000f83f    wall_time, fixed64, 1.5 as little-endian f64
    //   10 03                  step, varint 3
    //   1a 0d "brain.Event:2"  file_version, 13-byte string
    // Framed: 1a00000000000000 (length, u64 LE), 129bd82d (masked CRC-32C of the length),
    // the payload, e3c0b95c (masked CRC-32C of the payload). tensorboard 2.21.0's Python
    // protobuf and `masked_crc32c` produce the same bytes for this event.
    let expected = "1a00000000000000129bd82d\
                    09000000000000f83f10031a0d627261696e2e4576656e743a32\
                    e3c0b95c";
    assert_eq!(hex(&encode_record(&event.encode_to_vec())), expected);
}

#[test]
fn roundtrip_scalars_histogram_text() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("logs/train");
    let start = now_seconds();

    let mut writer = EventWriter::create(&run).unwrap();
    writer
        .write_text("keras", 0, "{\"layers\": [\"dense\"]}")
        .unwrap();
    writer.write_scalar("epoch_accuracy", 0, 0.0).unwrap();
    writer.write_scalar("epoch_loss", 0, 2.5).unwrap();
    writer.write_scalar("epoch_loss", 1, -0.125).unwrap();
    writer.write_scalar("epoch_loss", 7, f32::MAX).unwrap();
    let skipped = writer
        .write_histogram("dense/kernel/histogram", 1, &[0.0, 1.0, 1.5, 3.0, f32::NAN])
        .unwrap();
    assert_eq!(skipped, 1);
    let path = writer.path().to_path_buf();
    writer.close().unwrap();
    let end = now_seconds();

    assert_eq!(only_file(&run), path);
    let events = read_events(&path).unwrap();
    assert_eq!(events.len(), 7);

    // The first record carries only the file version.
    assert_eq!(
        events[0].what,
        Some(event::What::FileVersion(FILE_VERSION.to_owned()))
    );
    assert_eq!(events[0].step, 0);
    for event in &events {
        assert!(event.wall_time >= start, "{} < {start}", event.wall_time);
        assert!(event.wall_time <= end, "{} > {end}", event.wall_time);
    }

    let text = single_value(&events[1]);
    assert_eq!(events[1].step, 0);
    assert_eq!(text.tag, "keras");
    assert_eq!(plugin_name(text), "text");
    assert_eq!(tensor(text).dtype, DataType::DtString as i32);
    assert_eq!(
        tensor(text).string_val,
        vec![b"{\"layers\": [\"dense\"]}".to_vec()]
    );
    assert_eq!(shape(tensor(text)), Vec::<i64>::new());

    let expected_scalars = [
        ("epoch_accuracy", 0, 0.0_f32),
        ("epoch_loss", 0, 2.5),
        ("epoch_loss", 1, -0.125),
        ("epoch_loss", 7, f32::MAX),
    ];
    for (event, (tag, step, expected)) in events[2..6].iter().zip(expected_scalars) {
        let scalar = single_value(event);
        assert_eq!(scalar.tag, tag);
        assert_eq!(event.step, step, "step of {tag}");
        assert_eq!(plugin_name(scalar), "scalars");
        let metadata = scalar.metadata.as_ref().unwrap();
        assert_eq!(metadata.data_class, DataClass::Scalar as i32);
        assert_eq!(tensor(scalar).dtype, DataType::DtFloat as i32);
        assert_eq!(shape(tensor(scalar)), Vec::<i64>::new());
        // Compare bits so that 0.0 cannot pass as -0.0.
        assert_eq!(tensor(scalar).float_val.len(), 1);
        assert_eq!(
            tensor(scalar).float_val[0].to_bits(),
            expected.to_bits(),
            "{tag}@{step}"
        );
    }

    let histogram = single_value(&events[6]);
    assert_eq!(events[6].step, 1);
    assert_eq!(histogram.tag, "dense/kernel/histogram");
    assert_eq!(plugin_name(histogram), "histograms");
    assert_eq!(tensor(histogram).dtype, DataType::DtDouble as i32);
    assert_eq!(shape(tensor(histogram)), vec![30, 3]);
    let rows: Vec<&[f64]> = tensor(histogram).double_val.chunks(3).collect();
    assert_eq!(rows.len(), 30);
    // Width is 3.0 / 30 = 0.1: 0.0 falls in bucket 0, 1.0 in bucket 10, 1.5 in bucket 15 and
    // 3.0 (the max) in the last bucket. NaN is skipped.
    let counts: Vec<f64> = rows.iter().map(|row| row[2]).collect();
    let mut expected_counts = vec![0.0; 30];
    for index in [0, 10, 15, 29] {
        expected_counts[index] = 1.0;
    }
    assert_eq!(counts, expected_counts);
    assert_eq!(rows[0][0], 0.0);
    assert_eq!(rows[29][1], 3.0);
}

#[test]
fn histogram_of_empty_and_equal_values() {
    let dir = tempfile::tempdir().unwrap();
    let mut writer = EventWriter::create(dir.path()).unwrap();
    writer
        .write_histogram_with_buckets("empty", 0, &[], 3)
        .unwrap();
    writer
        .write_histogram_with_buckets("same", 0, &[4.0, 4.0], 3)
        .unwrap();
    let path = writer.path().to_path_buf();
    writer.close().unwrap();

    let events = read_events(path).unwrap();
    let empty = tensor(single_value(&events[1]));
    assert_eq!(shape(empty), vec![3, 3]);
    assert_eq!(empty.double_val, vec![0.0; 9]);
    let same = tensor(single_value(&events[2]));
    assert_eq!(
        same.double_val,
        vec![4.0, 4.0, 0.0, 4.0, 4.0, 0.0, 4.0, 4.0, 2.0]
    );
}

#[test]
fn drop_flushes_buffered_records() {
    let dir = tempfile::tempdir().unwrap();
    let path = {
        let mut writer = EventWriter::create(dir.path()).unwrap();
        writer.write_scalar("epoch_loss", 4, 0.75).unwrap();
        writer.path().to_path_buf()
    };
    let events = read_events(path).unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!(events[1].step, 4);
}

#[test]
fn flush_makes_records_readable() {
    let dir = tempfile::tempdir().unwrap();
    let mut writer = EventWriter::create(dir.path()).unwrap();
    // The file-version record is on disk as soon as `create` returns.
    assert_eq!(read_records(writer.path()).unwrap().len(), 1);
    writer.write_scalar("epoch_loss", 0, 1.0).unwrap();
    writer.flush().unwrap();
    assert_eq!(read_records(writer.path()).unwrap().len(), 2);
}

#[test]
fn two_writers_in_one_dir_use_distinct_files() {
    let dir = tempfile::tempdir().unwrap();
    let mut first = EventWriter::create(dir.path()).unwrap();
    let mut second = EventWriter::create(dir.path()).unwrap();
    assert_ne!(first.path(), second.path());
    first.write_scalar("a", 0, 1.0).unwrap();
    second.write_scalar("b", 0, 2.0).unwrap();
    let (first_path, second_path) = (first.path().to_path_buf(), second.path().to_path_buf());
    first.close().unwrap();
    second.close().unwrap();
    assert_eq!(single_value(&read_events(first_path).unwrap()[1]).tag, "a");
    assert_eq!(single_value(&read_events(second_path).unwrap()[1]).tag, "b");
}

#[test]
fn file_name_starts_with_tfevents() {
    let dir = tempfile::tempdir().unwrap();
    let writer = EventWriter::create(dir.path()).unwrap();
    let name = writer
        .path()
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    assert!(name.starts_with("events.out.tfevents."), "{name}");
    assert!(name.ends_with(".v2"), "{name}");
    assert_eq!(writer.path().parent().unwrap(), dir.path());
}

#[test]
fn create_fails_when_parent_is_file() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("not-a-dir");
    fs::write(&blocker, b"").unwrap();
    let target = blocker.join("train");

    let error = EventWriter::create(&target).unwrap_err();
    assert!(
        matches!(error, TensorBoardError::CreateDir { .. }),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(message.contains(&target.display().to_string()), "{message}");
}

#[test]
fn read_events_reports_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let mut writer = EventWriter::create(dir.path()).unwrap();
    writer.write_scalar("epoch_loss", 0, 1.0).unwrap();
    let path = writer.path().to_path_buf();
    writer.close().unwrap();

    let mut bytes = fs::read(&path).unwrap();
    let last = bytes.len() - 5;
    bytes[last] ^= 0xff;
    fs::write(&path, &bytes).unwrap();

    let error = read_events(&path).unwrap_err();
    assert!(
        matches!(error, TensorBoardError::CorruptRecord { .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains("data CRC mismatch"), "{error}");
}

#[test]
fn read_events_reports_missing_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("missing");
    let error = read_events(&path).unwrap_err();
    assert!(matches!(error, TensorBoardError::Read { .. }), "{error:?}");
    assert!(error.to_string().contains("missing"), "{error}");
}
