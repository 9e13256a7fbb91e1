//! Learns XOR with a small MLP and prints its predictions for the four points.
//!
//! Run with `cargo run --release --example xor`.

use grit::prelude::*;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (x, y) = grit::data::xor();
    let mut model = Sequential::new([2])
        .seed(3)
        .add(Dense::new(8).activation(Activation::Tanh))
        .add(Dense::new(1).activation(Activation::Sigmoid));
    model.compile(
        Adam::new(0.05),
        Loss::BINARY_CROSSENTROPY,
        [Metric::Accuracy],
    )?;
    print!("{}", model.summary());

    let options = FitOptions::new().epochs(300).batch_size(4).verbose(0);
    let history = model.fit(&x, &y, &options, &mut [])?;
    println!(
        "after {} epochs: loss {:.4}, accuracy {:.2}",
        history.epochs().len(),
        history.last("loss").unwrap_or(f64::NAN),
        history.last("accuracy").unwrap_or(f64::NAN)
    );

    let predictions = model.predict(&x, 4)?;
    for i in 0..x.nrows() {
        println!(
            "{} xor {} = {}  (predicted {:.3})",
            x[[i, 0]],
            x[[i, 1]],
            y[[i, 0]],
            predictions[[i, 0]]
        );
    }
    Ok(())
}
