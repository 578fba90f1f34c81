// JavaScript strings index UTF-16 code units; the API's span offsets are Unicode code points
// (Python str indices). These convert between the two for one text.

export class Offsets {
  constructor(text) {
    this.text = text;
    this.unitToCp = new Int32Array(text.length + 1);
    const cpToUnit = [];
    let cp = 0;
    for (let unit = 0; unit < text.length; unit += 1) {
      this.unitToCp[unit] = cp;
      const code = text.charCodeAt(unit);
      const pair = code >= 0xd800 && code <= 0xdbff && unit + 1 < text.length;
      cpToUnit.push(unit);
      if (pair) {
        const low = text.charCodeAt(unit + 1);
        if (low >= 0xdc00 && low <= 0xdfff) {
          unit += 1;
          this.unitToCp[unit] = cp + 1; // inside a pair: rounds up to the next code point
        }
      }
      cp += 1;
    }
    this.unitToCp[text.length] = cp;
    cpToUnit.push(text.length);
    this.cpToUnitTable = cpToUnit;
    this.length = cp; // code points
  }

  toCodePoint(unit) {
    return this.unitToCp[Math.max(0, Math.min(unit, this.text.length))];
  }

  toUnit(cp) {
    return this.cpToUnitTable[Math.max(0, Math.min(cp, this.length))];
  }

  slice(start, end) {
    return this.text.slice(this.toUnit(start), this.toUnit(end));
  }
}
