
mod bundles;
